//! The storage services (content, namespaces, images, GC) in a booted test image, driven by
//! the host's berthctl through the virtio-serial API bridge.
//!
//! Needs `make static image-test`; run one at a time:
//! `cargo test -p berth-qemu-tests --test content -- --test-threads=1 --nocapture`.
//! Durations and throughput are printed, never asserted.

use std::time::Duration;

use anyhow::{ensure, Result};
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};

const READY: &str = r"berth-init: berth ready";
/// The demo image every default and test image preloads (image-build/src/demo.rs).
const DEMO_IMAGE: &str = berth_layout::paths::DEMO_IMAGE;
/// The namespace this test stores its blobs in (the preloaded image is in `default`).
const NS: &str = "ctest";
/// Hang guard for one berthctl call over the bridge (a few MiB at TCG speed).
const CTL_TIMEOUT: Duration = Duration::from_secs(180);

fn mib_per_s(bytes: usize, d: Duration) -> String {
    format!(
        "{:.2} MiB/s",
        bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
    )
}

#[test]
fn content_round_trips_and_gc_frees_it_in_the_guest() -> Result<()> {
    let mut vm = Vm::builder("storage")
        .image(&Image::test_image()?)
        .spawn()?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let dir = tempfile::tempdir()?;

    // The demo image preloaded into the OS image is there at first boot, with no network at
    // all (`-nodefaults`: this VM has no NIC): berthd imports /usr/share/berth/images in the
    // background after it is ready.
    let (ls, took) = vm.wait_for_ok(
        "the preloaded demo image in `images ls`",
        CTL_TIMEOUT,
        Duration::from_millis(250),
        |vm| {
            let out = vm.berthctl(&["images", "ls"], CTL_TIMEOUT)?;
            if out.stdout.contains(DEMO_IMAGE) {
                Ok(out.stdout)
            } else {
                Err(berth_qemu_tests::Error::Timeout {
                    what: DEMO_IMAGE.into(),
                    timeout: CTL_TIMEOUT,
                    context: format!("{}{}", out.stdout, out.stderr),
                })
            }
        },
    )?;
    println!(
        "preloaded demo image listed {:.3} s after `berth ready`:\n{ls}",
        took.as_secs_f64()
    );
    let dev = String::from_utf8(vm.agent()?.read_file("/proc/net/dev")?)?;
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(str::trim))
        .collect();
    vm.check(
        ifaces == ["lo"],
        format!("the guest has a network: {ifaces:?}"),
    )?;

    // 3 MiB: several 1 MiB Write and Read messages through the bridge.
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("blob");
    std::fs::write(&file, &data)?;
    let f = file.to_str().unwrap_or_default();
    let put = vm.berthctl_ok(
        &[
            "-n",
            NS,
            "content",
            "put",
            f,
            "-l",
            "containerd.io/gc.root=1",
        ],
        CTL_TIMEOUT,
    )?;
    let digest = put.stdout.trim().to_string();
    println!(
        "content put of 3 MiB: {:?} ({})",
        put.elapsed,
        mib_per_s(data.len(), put.elapsed)
    );
    ensure!(digest.starts_with("sha256:"), "no digest from put: {put:?}");

    let out = dir.path().join("out");
    let get = vm.berthctl_ok(
        &[
            "-n",
            NS,
            "content",
            "get",
            &digest,
            "-o",
            out.to_str().unwrap_or_default(),
        ],
        CTL_TIMEOUT,
    )?;
    println!(
        "content get of 3 MiB: {:?} ({})",
        get.elapsed,
        mib_per_s(data.len(), get.elapsed)
    );
    vm.check(std::fs::read(&out)? == data, "content read back differs")?;
    let ls = vm.berthctl_ok(&["-n", NS, "content", "ls", "-q"], CTL_TIMEOUT)?;
    vm.check(
        ls.stdout == format!("{digest}\n"),
        format!("content ls: {:?}", ls.stdout),
    )?;

    // Namespaces isolate; errors keep their codes across the bridge.
    let other = vm.berthctl(&["-n", "other", "content", "get", &digest], CTL_TIMEOUT)?;
    vm.check(
        !other.status.success() && other.stderr.contains("NOT_FOUND"),
        format!("other namespace saw the blob: {other:?}"),
    )?;
    vm.berthctl_ok(&["namespaces", "create", "team"], CTL_TIMEOUT)?;
    let dup = vm.berthctl(&["namespaces", "create", "team"], CTL_TIMEOUT)?;
    vm.check(dup.stderr.contains("ALREADY_EXISTS"), format!("{dup:?}"))?;
    vm.berthctl_ok(&["namespaces", "rm", "team"], CTL_TIMEOUT)?;
    let rm = vm.berthctl(&["images", "rm", "nope"], CTL_TIMEOUT)?;
    vm.check(
        rm.status.code() == Some(1) && rm.stderr.contains("NOT_FOUND"),
        format!("{rm:?}"),
    )?;

    // An unreferenced blob goes at the next collection; the rooted one stays.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"nobody refers to this")?;
    let junk_digest = vm
        .berthctl_ok(
            &[
                "-n",
                NS,
                "content",
                "put",
                junk.to_str().unwrap_or_default(),
            ],
            CTL_TIMEOUT,
        )?
        .stdout
        .trim()
        .to_string();
    let gc = vm.berthctl_ok(&["gc"], CTL_TIMEOUT)?;
    println!("berthctl gc ({:?}):\n{}", gc.elapsed, gc.stdout);
    vm.check(
        gc.stdout.contains(&junk_digest) && gc.stdout.contains("removed 1 blobs (21 B freed)"),
        format!("gc output: {}", gc.stdout),
    )?;
    let ls = vm.berthctl_ok(&["-n", NS, "content", "ls", "-q"], CTL_TIMEOUT)?;
    vm.check(
        ls.stdout == format!("{digest}\n"),
        format!("content ls: {:?}", ls.stdout),
    )?;
    Ok(())
}
