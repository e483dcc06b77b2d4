//! `make bench`: import + unpack of one multi-layer image archive, berth against Debian's
//! containerd (`ctr images import`, which imports and unpacks into overlayfs snapshots), on
//! the same archive in the same run, reported as a ratio.
//!
//! The image is built with umoci from host directories (many small files, as real base
//! images have). Each side runs three times, alternating, each time from scratch (a fresh
//! containerd root; a fresh berth store), and the medians are compared. berth's side is
//! `import_archive` into a content store, then every layer applied in overlay mode into its
//! own directory — what the overlayfs snapshotter will do.
//!
//! Ignored by `cargo test`; run by `make bench` (release build, root).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use berth_runtime::archive::{self, ApplyOptions, LayerRef};
use berth_runtime::content::LocalStore;
use berth_runtime::images::{self, import::ImportOptions, Platform};
use common::{run, Containerd};

/// Host directories copied into one layer each.
const SOURCES: [&str; 4] = [
    "/usr/share/zoneinfo",
    "/usr/share/perl",
    "/usr/lib/python3.11",
    "/usr/include",
];
const RUNS: usize = 3;

fn build_image(work: &Path) -> Result<(PathBuf, u64, usize)> {
    let layout = work.join("oci");
    let image = format!("{}:bench", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    let mut layers = 0;
    for src in SOURCES {
        if !Path::new(src).is_dir() {
            println!("bench: {src} not on this host, layer left out");
            continue;
        }
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle))?;
        let dest = bundle.join("rootfs").join(src.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap())?;
        run(Command::new("cp").arg("-a").arg(src).arg(&dest))?;
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle))?;
        fs::remove_dir_all(&bundle)?;
        layers += 1;
    }
    ensure!(
        layers >= 2,
        "bench: too few source directories on this host"
    );
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

/// (total, import part, entries).
fn berth_once(work: &Path, archive: &Path, i: usize) -> Result<(Duration, Duration, u64)> {
    let dir = work.join(format!("berth{i}"));
    let t = Instant::now();
    let store = LocalStore::open(&dir)?;
    let report = images::import::import_archive(
        &store,
        fs::File::open(archive)?,
        &ImportOptions::default(),
    )?;
    let import = t.elapsed();
    let image = images::resolve(&store, &report.images[0].target, &Platform::default())?;
    let mut uppers: Vec<PathBuf> = Vec::new();
    let mut files = 0;
    for (n, layer) in image.layers.iter().enumerate() {
        let upper = dir.join(format!("snapshots/{n}/fs"));
        fs::create_dir_all(&upper)?;
        let r = LayerRef {
            digest: layer.digest,
            size: layer.size,
            media_type: layer.media_type.clone(),
            diff_id: Some(layer.diff_id),
        };
        let lowers = uppers.iter().rev().cloned().collect();
        let stats = archive::apply_layer_file(
            &upper,
            &store.blob_path(&layer.digest),
            &r,
            &ApplyOptions::overlay(lowers),
        )?;
        files += stats.entries;
        uppers.push(upper);
    }
    let took = t.elapsed();
    fs::remove_dir_all(&dir)?;
    Ok((took, import, files))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
#[ignore = "benchmark: run by `make bench`"]
fn import_and_unpack_berth_vs_containerd() -> Result<()> {
    if !common::root_and_tools(
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
    let mut entries = 0;
    for i in 0..RUNS {
        let c = containerd_once(work, &archive, i)?;
        let (b, import, n) = berth_once(work, &archive, i)?;
        entries = n;
        println!(
            "bench: run {i}: containerd {c:.2?}, berth {b:.2?} (import {import:.2?}, unpack {:.2?})",
            b - import
        );
        ctd.push(c);
        berth.push(b);
    }
    let (c, b) = (median(ctd), median(berth));
    println!(
        "bench: import+unpack of {layers} layers, {entries} tar entries, {:.1} MB archive; \
         median of {RUNS}: containerd {c:.2?}, berth {b:.2?}; berth/containerd = {:.2}",
        size as f64 / 1e6,
        b.as_secs_f64() / c.as_secs_f64()
    );
    Ok(())
}
