//! ZFS, in one boot of the ZFS test image (`make image-test-zfs`: `berth-image build --test
//! --zfs`) with a virtio disk carrying one GPT partition labelled `BERTH_ZFS`: init loads the
//! ZFS modules and creates the pool on that partition (the kernel command line configures
//! `[zfs]`), then inside the guest the static `berth-snapshotter-conformance` runs
//!
//! * the shared snapshotter conformance suite against the zfs snapshotter on the real pool,
//! * the command-count check with 10 and 200 existing snapshots (constant count per
//!   operation, no command lists the pool),
//! * the cleanup check: a foreign snapshot, a dataset deleted behind berth's back and a
//!   failing destroy do not stop removal, and the reconciliation at open;
//!
//! and `berthctl plugins ls` shows the zfs plugin with its status and reason.
//! Needs `sgdisk` (gdisk) on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};

const READY: &str = r"berth-init: berth ready";
const CONFORMANCE: &str = "/usr/libexec/berth/berth-snapshotter-conformance";
/// Hang guard for each in-guest run (TCG is slow; durations are printed, not asserted).
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// `$BERTH_TEST_ZFS_IMAGE` or `<workspace>/out/image-test-zfs`.
const IMAGE_ENV: &str = "BERTH_TEST_ZFS_IMAGE";

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sparse raw disk of `mib` MiB with one GPT partition named `label` spanning it.
fn gpt_disk(path: &Path, mib: u64, label: &str) -> Result<()> {
    std::fs::File::create(path)?.set_len(mib << 20)?;
    let out = Command::new("sgdisk")
        .args(["-n", "1:2048:0", "-t", "1:bf01", "-c"])
        .arg(format!("1:{label}"))
        .arg(path)
        .output()
        .context("cannot run sgdisk (apt-get install gdisk; `make deps` does)")?;
    if !out.status.success() {
        bail!("sgdisk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn zfs_image() -> Result<Image> {
    let dir = std::env::var_os(IMAGE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| berth_qemu_tests::image::workspace_dir().join("out/image-test-zfs"));
    Image::open(&dir).with_context(|| {
        format!(
            "the ZFS test image is missing in {}: run `make image-test-zfs` (or set {IMAGE_ENV})",
            dir.display()
        )
    })
}

#[test]
#[ignore = "ZFS scenario: ~18 min under TCG and one conformance case (SpecialFiles: user xattrs on a zfs mount) still fails; run with `make test-zfs` (docs/zfs.md)"]
fn zfs_pool_snapshotter_conformance_and_constant_command_counts() -> Result<()> {
    let image = zfs_image()?;
    let scratch = Scratch(std::env::temp_dir().join(format!("berth-zfs-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0)?;
    let disk = scratch.0.join("pool.img");
    gpt_disk(&disk, 512, "BERTH_ZFS")?;

    let started = Instant::now();
    let mut vm = Vm::builder("zfs")
        .image(&image)
        .disk(&disk)
        .memory_mib(1024)
        .append(
            "berth.zfs.pool=tank berth.zfs.label=BERTH_ZFS berth.zfs.create=true \
             berth.zfs.datasets=tank/berth,tank/conformance",
        )
        .spawn()?;
    let created = vm.wait_for_line(r"zfs: pool tank created on /dev/vda1", BOOT_TIMEOUT)?;
    println!("{created}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let booted = started.elapsed();
    println!("booted with a new pool in {:.1} s", booted.as_secs_f64());

    let mut agent = vm.agent()?;
    let mut run = |what: &str, argv: &[&str]| -> Result<()> {
        let t = Instant::now();
        let out = agent.run_with(argv, None, RUN_TIMEOUT)?;
        println!(
            "--- {what} ({:.1} s, exit {}):\n{}{}",
            t.elapsed().as_secs_f64(),
            out.status,
            out.stdout,
            out.stderr
        );
        if out.status != 0 {
            bail!("{what} failed with exit status {}", out.status);
        }
        Ok(())
    };
    let suite = run(
        "conformance suite (zfs)",
        &[CONFORMANCE, "zfs", "/var/tmp/zfs-suite", "tank/conformance"],
    );
    let scaling = run(
        "command counts with 10 and 200 snapshots",
        &[
            CONFORMANCE,
            "zfs-scaling",
            "/var/tmp/zfs-scaling",
            "tank/conformance",
            "10,200",
        ],
    );
    let cleanup = run(
        "cleanup and reconciliation",
        &[
            CONFORMANCE,
            "zfs-cleanup",
            "/var/tmp/zfs-cleanup",
            "tank/conformance",
        ],
    );
    drop(agent);
    // The engine's view: the plugin is listed with its status (skipped with the reason when
    // berthd.toml names no parent dataset, as in the default image).
    let plugins = vm.berthctl_ok(&["plugins", "ls"], Duration::from_secs(30))?;
    let zfs_row = plugins
        .stdout
        .lines()
        .find(|l| l.contains("snapshotter") && l.contains("zfs"))
        .map(str::to_string);
    println!("plugins ls: {zfs_row:?}");
    vm.check(zfs_row.is_some(), "berthctl plugins ls has no zfs row")?;
    vm.check(
        zfs_row
            .as_deref()
            .is_some_and(|r| r.contains("no parent dataset configured")),
        format!("zfs plugin row without the reason: {zfs_row:?}"),
    )?;
    suite?;
    scaling?;
    cleanup?;
    vm.powerdown()?;
    let status = vm.wait_exit(Duration::from_secs(60))?;
    vm.check(status.success(), format!("QEMU exited with {status}"))?;
    println!(
        "zfs scenario: {:.1} s in total (boot {:.1} s)",
        started.elapsed().as_secs_f64(),
        booted.as_secs_f64()
    );
    Ok(())
}
