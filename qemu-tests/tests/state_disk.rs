//! The state disk: a partition labelled `BERTH_STATE` is formatted on first boot, mounted on
//! `/var`, and what is written there survives a reboot; the node file on it layers over the
//! image's init.toml; a disk without our label is never touched (byte-identical after boot)
//! and the node runs diskless. Needs the test image (`make image-test`) and `sgdisk`
//! (gdisk) on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};
use sha2::{Digest, Sha256};

const READY: &str = r"berth-init: berth ready";
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(180);

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("berth-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A raw disk of `mib` MiB with one GPT partition named `label` spanning it.
fn gpt_disk(path: &Path, mib: u64, label: &str) -> Result<()> {
    std::fs::File::create(path)?.set_len(mib << 20)?;
    let out = Command::new("sgdisk")
        .args(["-n", "1:2048:0", "-t", "1:8300", "-c"])
        .arg(format!("1:{label}"))
        .arg(path)
        .output()
        .context("cannot run sgdisk (apt-get install gdisk; `make deps` does)")?;
    if !out.status.success() {
        bail!("sgdisk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn sha256_file(path: &Path) -> Result<String> {
    let data = std::fs::read(path)?;
    Ok(format!("{:x}", Sha256::digest(&data)))
}

fn boot(name: &str, image: &Image, disk: &Path) -> Result<Vm> {
    Ok(Vm::builder(name).image(image).disk(disk).spawn()?)
}

fn power_off(vm: &mut Vm) -> Result<()> {
    let started = Instant::now();
    vm.powerdown()?;
    let status = vm.wait_exit(POWEROFF_TIMEOUT)?;
    vm.check(status.success(), format!("QEMU exited with {status}"))?;
    println!("powered off in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

#[test]
fn labelled_disk_is_formatted_once_and_keeps_files_across_reboots() -> Result<()> {
    let image = Image::test_image()?;
    let scratch = Scratch::new("labelled")?;
    let disk = scratch.0.join("state.img");
    gpt_disk(&disk, 64, berth_layout::labels::STATE)?;

    // First boot: formatted, mounted, writable.
    let mut vm = boot("storage-first", &image, &disk)?;
    let formatting = vm.wait_for_line(
        r"storage: formatting /dev/vda1 \(partition label BERTH_STATE\)",
        BOOT_TIMEOUT,
    )?;
    println!("{formatting}");
    let mounted = vm.wait_for_line(
        r"storage: /dev/vda1 \(label BERTH_STATE\) mounted on /var",
        BOOT_TIMEOUT,
    )?;
    println!("{mounted}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let mut agent = vm.agent()?;
    agent.write_file(
        "/var/lib/berth/survivor.txt",
        b"written on the first boot\n",
        Some(0o644),
    )?;
    // A node file with one good and one bad key: the bad one is reported with its file and
    // line on the next boot, the good one applies (debug lines appear after the storage stage).
    agent.write_file(
        berth_layout::paths::NODE_FILE,
        b"[console]\nlevel = \"debug\"\n[berthd]\nmax_failures = \"many\"\n",
        Some(0o600),
    )?;
    drop(agent);
    power_off(&mut vm)?;
    drop(vm);

    // Second boot: checked, not formatted, the file is there, the node file is read.
    let mut vm = boot("storage-second", &image, &disk)?;
    let fsck = vm.wait_for_line(r"storage: e2fsck /dev/vda1: ", BOOT_TIMEOUT)?;
    println!("{fsck}");
    let node_error = vm.wait_for_line(r"node\.toml:4: key berthd\.max_failures", BOOT_TIMEOUT)?;
    println!("{node_error}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let console = vm.console_text();
    vm.check(
        !console.contains("storage: formatting"),
        "the state disk was formatted again on the second boot",
    )?;
    vm.check(
        fsck.contains("clean"),
        format!("e2fsck did not find the file system clean: {fsck:?}"),
    )?;
    vm.check(
        node_error.ends_with("key ignored, using the default or an earlier layer's value"),
        format!("unclear node file error: {node_error:?}"),
    )?;
    vm.check(
        console.contains("config: node file /var/etc/berth/node.toml applied"),
        "node file not applied",
    )?;
    let mut agent = vm.agent()?;
    let text = agent.read_file("/var/lib/berth/survivor.txt")?;
    vm.check(
        text == b"written on the first boot\n",
        format!("file on /var changed: {:?}", String::from_utf8_lossy(&text)),
    )?;
    drop(agent);
    power_off(&mut vm)?;
    Ok(())
}

#[test]
fn unlabelled_disk_is_left_alone_and_the_node_is_diskless() -> Result<()> {
    let image = Image::test_image()?;
    let scratch = Scratch::new("unlabelled")?;
    let disk = scratch.0.join("data.img");
    gpt_disk(&disk, 32, "customer-data")?;
    // Some recognisable contents inside the partition.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&disk)?;
        f.seek(SeekFrom::Start(1 << 20))?;
        f.write_all(&[0xA5; 64 * 1024])?;
    }
    let before = sha256_file(&disk)?;

    let mut vm = boot("storage-unlabelled", &image, &disk)?;
    let diskless = vm.wait_for_line(
        r"storage: no partition labelled BERTH_STATE: diskless node",
        BOOT_TIMEOUT,
    )?;
    println!("{diskless}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    // /var is a writable tmpfs.
    let mut agent = vm.agent()?;
    agent.write_file("/var/lib/berth/tmp.txt", b"x", None)?;
    drop(agent);
    power_off(&mut vm)?;
    drop(vm);
    let after = sha256_file(&disk)?;
    if before != after {
        bail!("the unlabelled disk changed: sha256 {before} before boot, {after} after");
    }
    println!("unlabelled disk sha256 unchanged: {after}");
    Ok(())
}
