//! UEFI disk boot and A/B upgrades under QEMU with OVMF and no `-kernel`.
//!
//! One scenario, four boots of one disk (`berth-image disk` of the test image, copied to a
//! 1 GiB file so the disk is larger than the image):
//! 1. firmware → systemd-boot → slot a: `berth ready`; the serial log shows the firmware
//!    and the loader/stub path; the state partition grows to fill the disk. Upgrade to a
//!    good UKI (version 2.0), reboot.
//! 2. slot b (trial) boots, berthd becomes ready, init blesses it; status shows slot b
//!    booted with 2.0. Upgrade to a bad UKI (3.0-bad: berthd cannot start, trial timeout
//!    20 s), reboot.
//! 3. slot a (trial, bad): never ready, init's trial watchdog reboots.
//! 4. systemd-boot falls back to slot b: ready again, and status says it rolled back.
//!    Power off; the host verifies the GPT (`sgdisk -v`) and the partition's new end.
//!
//! QEMU runs with `-no-reboot`, so each guest reboot ends the process and the test starts
//! the next boot on the same disk (a fresh copy of OVMF's variables each time: systemd-boot's
//! boot counting lives in file names on the ESP, not in variables).
//!
//! Part of `make test`; `make test-uefi` runs only this scenario.
//! Needs the test image (`make image-test`), the static binaries (`make static`, for
//! berth-image and berthctl), and `ovmf`, `systemd-boot-efi`, `mtools`, `dosfstools`,
//! `gdisk`. Durations are printed, never asserted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_qemu_tests::image::release_dir;
use berth_qemu_tests::{Image, Vm};

const READY: &str = r"berth-init: berth ready";
/// Hang guard for one UEFI boot to ready (firmware + stub + a 34 MB UKI under TCG: up to ~70 s
/// seen on a loaded machine, so 3x that).
const UEFI_BOOT_TIMEOUT: Duration = Duration::from_secs(360);
/// Hang guard for an upload of a UKI over the init bridge.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(300);
/// Size of the node's disk (the image is ~180 MiB).
const DISK_BYTES: u64 = 1 << 30;
/// The bad UKI's trial timeout.
const BAD_TRIAL_SECS: u64 = 20;

fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {shown}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success(),
        "{shown} failed ({}): {text}",
        out.status
    );
    Ok(text)
}

fn missing_prerequisite() -> Option<String> {
    for path in [
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "/usr/lib/systemd/boot/efi/systemd-bootx64.efi",
    ] {
        if !Path::new(path).exists() {
            return Some(format!("{path} missing (scripts/install-deps.sh)"));
        }
    }
    for tool in ["mcopy", "mkfs.vfat", "sgdisk"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} missing (scripts/install-deps.sh)"));
        }
    }
    None
}

/// `berthctl system status --format json` (retried while the bridge comes up).
fn status(vm: &mut Vm) -> Result<serde_json::Value> {
    let (out, _) = vm.wait_for_ok(
        "berthctl system status",
        UEFI_BOOT_TIMEOUT,
        Duration::from_millis(300),
        |vm| {
            vm.berthctl_system(
                &["--timeout", "3", "status", "--format", "json"],
                Duration::from_secs(30),
            )
        },
    )?;
    Ok(serde_json::from_str(&out.stdout)?)
}

fn booted_slot(status: &serde_json::Value) -> Option<(String, String, bool)> {
    status["boot"]["slots"]
        .as_array()?
        .iter()
        .find(|s| s["booted"] == true)
        .map(|s| {
            (
                s["slot"].as_str().unwrap_or("").to_string(),
                s["version"].as_str().unwrap_or("").to_string(),
                s["trial"] == true,
            )
        })
}

fn upgrade(vm: &mut Vm, uki: &Path) -> Result<Duration> {
    let started = Instant::now();
    let out = vm.berthctl_system(
        &[
            "--timeout",
            "60",
            "upgrade",
            &uki.display().to_string(),
            "--reboot",
        ],
        UPGRADE_TIMEOUT,
    )?;
    println!("upgrade: {}", out.stdout.trim());
    Ok(started.elapsed())
}

fn boot(name: &str, disk: &Path) -> Result<Vm> {
    Ok(Vm::builder(name).uefi(disk).memory_mib(768).spawn()?)
}

/// Four boots; about 95 s in all under TCG (87 s of QEMU time), measured on 2 busy cores.
#[test]
fn uefi_disk_grows_upgrades_and_rolls_back() -> Result<()> {
    if let Some(why) = missing_prerequisite() {
        eprintln!("SKIP uefi_disk_grows_upgrades_and_rolls_back: {why}");
        return Ok(());
    }
    let image = Image::test_image()?;
    let berth_image = release_dir().join("berth-image");
    ensure!(
        berth_image.exists(),
        "{} missing: run `make static`",
        berth_image.display()
    );
    let work = tempfile::tempdir()?;
    let w = work.path();
    let image_dir = image.dir.display().to_string();

    let started = Instant::now();
    run(Command::new(&berth_image).args([
        "disk",
        "--image",
        &image_dir,
        "--out",
        &w.join("v1").display().to_string(),
        "--version",
        "1.0",
    ]))?;
    let good = w.join("v2.efi");
    run(Command::new(&berth_image).args([
        "uki",
        "--image",
        &image_dir,
        "--out",
        &good.display().to_string(),
        "--version",
        "2.0",
    ]))?;
    let bad = w.join("v3-bad.efi");
    run(Command::new(&berth_image).args([
        "uki",
        "--image",
        &image_dir,
        "--out",
        &bad.display().to_string(),
        "--version",
        "3.0-bad",
        "--append",
        &format!(
            "berth.berthd.path=/nonexistent berth.boot.trial_ready_timeout_secs={BAD_TRIAL_SECS}"
        ),
    ]))?;
    println!(
        "artefacts (disk image + 2 UKIs) built in {:?}",
        started.elapsed()
    );

    let disk = w.join("node.raw");
    std::fs::copy(w.join("v1/disk.raw"), &disk)?;
    let image_bytes = std::fs::metadata(&disk)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)?
        .set_len(DISK_BYTES)?;
    let mut qemu_time = Duration::ZERO;

    // Boot 1: slot a, growth, upgrade to 2.0.
    let mut vm = boot("uefi-1", &disk)?;
    let line = vm.wait_for_line(READY, UEFI_BOOT_TIMEOUT)?;
    let ready1 = vm.started().elapsed();
    let console = vm.console_text();
    vm.check(
        console.contains("BdsDxe: starting"),
        "the serial log shows the firmware starting a boot option",
    )?;
    vm.check(
        console.contains("loader \"systemd-boot") && console.contains("stub \"systemd-stub"),
        "init reports systemd-boot and systemd-stub from their EFI variables",
    )?;
    vm.check(
        console.contains("backup GPT moved to the end"),
        "the state partition grew to fill the disk",
    )?;
    vm.check(
        console.contains("grew the file system online"),
        "the state file system was grown online",
    )?;
    let s = status(&mut vm)?;
    println!(
        "boot 1 ready in {ready1:?} ({line}); status boot: {}",
        s["boot"]
    );
    let booted = booted_slot(&s);
    vm.check(
        booted.as_ref().map(|b| b.0.as_str()) == Some("a"),
        format!("boot 1 runs slot a: {booted:?}"),
    )?;
    let up1 = upgrade(&mut vm, &good)?;
    vm.wait_exit(UEFI_BOOT_TIMEOUT)?;
    qemu_time += vm.started().elapsed();
    println!(
        "boot 1: upgrade upload {up1:?}, QEMU ran {:?}",
        vm.started().elapsed()
    );
    drop(vm);

    // Boot 2: slot b on trial, blessed once ready; then the bad upgrade.
    let mut vm = boot("uefi-2", &disk)?;
    vm.wait_for_line(READY, UEFI_BOOT_TIMEOUT)?;
    let ready2 = vm.started().elapsed();
    vm.wait_for_line("is good: berthd ready", Duration::from_secs(90))?;
    let s = status(&mut vm)?;
    let booted = booted_slot(&s);
    vm.check(
        booted == Some(("b".into(), "2.0".into(), false)),
        format!("boot 2 runs slot b, version 2.0, blessed: {booted:?}"),
    )?;
    let up2 = upgrade(&mut vm, &bad)?;
    vm.wait_exit(UEFI_BOOT_TIMEOUT)?;
    qemu_time += vm.started().elapsed();
    println!(
        "boot 2: ready in {ready2:?}, upgrade upload {up2:?}, QEMU ran {:?}",
        vm.started().elapsed()
    );
    drop(vm);

    // Boot 3: the bad slot never gets ready; init's trial watchdog reboots.
    let mut vm = boot("uefi-3", &disk)?;
    let line = vm.wait_for_line(
        "not blessing it, rebooting",
        UEFI_BOOT_TIMEOUT + Duration::from_secs(BAD_TRIAL_SECS),
    )?;
    println!("boot 3: {line}");
    vm.check(
        !vm.console_text().contains(READY),
        "the bad slot never became ready",
    )?;
    vm.wait_exit(UEFI_BOOT_TIMEOUT)?;
    qemu_time += vm.started().elapsed();
    println!("boot 3: QEMU ran {:?}", vm.started().elapsed());
    drop(vm);

    // Boot 4: systemd-boot falls back to slot b; status says what happened.
    let mut vm = boot("uefi-4", &disk)?;
    vm.wait_for_line(READY, UEFI_BOOT_TIMEOUT)?;
    let ready4 = vm.started().elapsed();
    let s = status(&mut vm)?;
    let booted = booted_slot(&s);
    let outcome = s["boot"]["outcome"].as_str().unwrap_or("").to_string();
    println!("boot 4: ready in {ready4:?}; last boot: {outcome}");
    vm.check(
        booted == Some(("b".into(), "2.0".into(), false)),
        format!("boot 4 fell back to slot b, version 2.0: {booted:?}"),
    )?;
    vm.check(
        outcome.starts_with("rolled back: slot a") && outcome.contains("3.0-bad"),
        format!("status names the rollback: {outcome:?}"),
    )?;
    let text = vm.berthctl_system(&["--timeout", "15", "status"], Duration::from_secs(30))?;
    println!("{}", text.stdout);
    vm.berthctl_system(&["--timeout", "15", "poweroff"], Duration::from_secs(30))?;
    vm.wait_exit(UEFI_BOOT_TIMEOUT)?;
    qemu_time += vm.started().elapsed();
    drop(vm);

    // The GPT after growth, from the host.
    let verify = run(Command::new("sgdisk").arg("-v").arg(&disk))?;
    if !verify.contains("No problems found") {
        bail!("sgdisk -v {}: {verify}", disk.display());
    }
    let info = run(Command::new("sgdisk").args(["-i", "2"]).arg(&disk))?;
    let last: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Last sector: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("sgdisk -i 2: no last sector")?;
    let disk_sectors = DISK_BYTES / 512;
    ensure!(
        last > disk_sectors - 2048 - 34 && last < disk_sectors - 33,
        "BERTH_STATE ends at sector {last} of {disk_sectors}: it did not grow to the end"
    );
    println!(
        "image {image_bytes} bytes on a {DISK_BYTES}-byte disk: BERTH_STATE now ends at sector {last} of {disk_sectors}; sgdisk -v: no problems"
    );
    println!(
        "UEFI scenario: 4 boots, QEMU time {qemu_time:?}, total {:?}",
        started.elapsed()
    );
    Ok(())
}
