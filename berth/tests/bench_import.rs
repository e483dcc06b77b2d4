//! `make bench`: import + unpack of one multi-layer image archive, berth against Debian's
//! containerd (`ctr images import`, which imports and unpacks into overlayfs snapshots), on
//! the same archive in the same run, reported as a ratio.
//!
//! The image is built with umoci from host directories (many small files, as real base
//! images have). Each side runs three times, alternating, each time from scratch (a fresh
//! containerd root; a fresh berthd root), and the medians are compared. berth's side is
//! `berthctl images import` against a running berthd: stream, verify, record, unpack into
//! overlayfs snapshots — the same work `ctr images import` does.
//!
//! Ignored by `cargo test`; run by `make bench` (release build, root).

use berth_test_support::host;
use berth_test_support::support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use host::{median, run, Containerd};

/// Host directories copied into one layer each.
const SOURCES: [&str; 4] = [
    "/usr/share/zoneinfo",
    "/usr/share/perl",
    "/usr/lib/python3.11",
    "/usr/include",
];
const RUNS: usize = 3;

fn build_image(work: &Path) -> Result<(PathBuf, u64, usize)> {
    let (layout, layers) = host::umoci_layout(work, &SOURCES)?;
    let archive = work.join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"]))?;
    Ok((archive.clone(), fs::metadata(&archive)?.len(), layers))
}

fn containerd_once(work: &Path, archive: &Path, i: usize) -> Result<Duration> {
    let dir = work.join(format!("ctd{i}"));
    let ctd = Containerd::start(&dir)?;
    let t = Instant::now();
    run(ctd.ctr("bench").args(["images", "import"]).arg(archive))?;
    let took = t.elapsed();
    drop(ctd);
    fs::remove_dir_all(&dir)?;
    Ok(took)
}

/// One berth run: a fresh berthd (its own root and socket, started before the clock like
/// containerd), then `berthctl images import`, which streams the archive to berthd, verifies
/// and records it, and unpacks it into overlayfs snapshots — the same work as `ctr images
/// import`. Returns the time of the import command.
fn berth_once(work: &Path, archive: &Path, i: usize) -> Result<Duration> {
    let dir = work.join(format!("berth{i}"));
    fs::create_dir_all(&dir)?;
    let took = {
        let d = support::start_berthd(&dir);
        let t = Instant::now();
        let out = support::berthctl(
            &d.socket,
            &[
                "images",
                "import",
                "--snapshotter",
                "overlayfs",
                archive.to_str().unwrap(),
            ],
        );
        let took = t.elapsed();
        ensure!(
            out.status.success(),
            "berthctl images import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    };
    let _ = Command::new("umount").arg("-R").arg(&dir).status();
    fs::remove_dir_all(&dir)?;
    Ok(took)
}

#[test]
#[ignore = "benchmark: run by `make bench`"]
fn import_and_unpack_berth_vs_containerd() -> Result<()> {
    if !host::root_and_tools(
        "import benchmark",
        &["umoci", "containerd", "ctr", "tar", "cp"],
    )? {
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("berth-bench").tempdir()?;
    let work = tmp.path();
    let t = Instant::now();
    let (archive, size, layers) = build_image(work)?;
    println!(
        "bench: image of {layers} gzip layers, archive {:.1} MB, built in {:.1?}",
        size as f64 / 1e6,
        t.elapsed()
    );
    let mut ctd = Vec::new();
    let mut berth = Vec::new();
    for i in 0..RUNS {
        let c = containerd_once(work, &archive, i)?;
        let b = berth_once(work, &archive, i)?;
        println!("bench: run {i}: containerd {c:.2?}, berth {b:.2?}");
        ctd.push(c);
        berth.push(b);
    }
    let (c, b) = (median(ctd), median(berth));
    println!(
        "bench: import+unpack of {layers} layers, {:.1} MB archive; \
         median of {RUNS}: containerd {c:.2?}, berth {b:.2?}; berth/containerd = {:.2}",
        size as f64 / 1e6,
        b.as_secs_f64() / c.as_secs_f64()
    );
    Ok(())
}
