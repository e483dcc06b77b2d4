//! `make bench`: pull + unpack of one multi-layer image from a local `docker-registry`,
//! berth against Debian's containerd (`ctr images pull`, which fetches and unpacks into
//! overlayfs snapshots), from the same registry in the same run, reported as a ratio.
//!
//! The image is built with umoci from host directories (one layer each, many small files as
//! real base images have) and pushed once with skopeo. Each side pulls three times,
//! alternating, each time into a fresh root (a fresh containerd; a fresh berth store), and
//! the medians are compared. Both use 3 parallel layer downloads (containerd's default).
//! berth's side is the pull pipeline in-process (`remotes::pull::pull` with an explicit
//! plain-HTTP endpoint, because berthd's endpoint configuration — hosts.toml — is another
//! module): fetch, verify, store, record, unpack into overlayfs — the work `ctr images pull`
//! does, minus one local RPC hop.
//!
//! Ignored by `cargo test`; run by `make bench` (release build, root).

use berth_test_support::host;
mod registry;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use berth_engine::remotes::auth::Credentials;
use berth_engine::remotes::Scheme;
use host::{median, run, Containerd};

/// Host directories copied into one layer each.
const SOURCES: [&str; 5] = [
    "/usr/share/zoneinfo",
    "/usr/share/perl",
    "/usr/lib/python3.11",
    "/usr/include",
    "/usr/share/locale",
];
const RUNS: usize = 3;

fn containerd_once(work: &Path, reference: &str, i: usize) -> Result<Duration> {
    let dir = work.join(format!("ctd{i}"));
    let ctd = Containerd::start(&dir)?;
    let t = Instant::now();
    run(ctd.ctr("bench").args([
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        "overlayfs",
        "--platform",
        "linux/amd64",
        reference,
    ]))?;
    let took = t.elapsed();
    drop(ctd);
    fs::remove_dir_all(&dir)?;
    Ok(took)
}

fn berth_once(work: &Path, addr: &str, reference: &str, i: usize) -> Result<Duration> {
    let dir = work.join(format!("berth{i}"));
    let took = {
        let e = registry::engine(&dir)?;
        let mut o = registry::opts(Duration::from_secs(30));
        o.snapshotter = Some("overlayfs".into());
        let rt = registry::rt();
        let t = Instant::now();
        let r = rt.block_on(berth_engine::remotes::pull::pull(
            e.storage.clone(),
            e.snapshotters.clone(),
            "bench",
            reference,
            &[registry::endpoint(Scheme::Http, addr)],
            Arc::new(Credentials::default()),
            o,
            None,
        ))?;
        let took = t.elapsed();
        ensure!(r.chain_id.is_some(), "berth pull did not unpack");
        took
    };
    host::unmount_below(&dir);
    fs::remove_dir_all(&dir)?;
    Ok(took)
}

#[test]
#[ignore = "benchmark: run by `make bench`"]
fn pull_and_unpack_berth_vs_containerd() -> Result<()> {
    if !host::root_and_tools(
        "pull benchmark",
        &[
            "umoci",
            "skopeo",
            "docker-registry",
            "containerd",
            "ctr",
            "cp",
        ],
    )? {
        return Ok(());
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench-pull")
        .tempdir()?;
    let work = tmp.path();
    let t = Instant::now();
    let (layout, layers) = host::umoci_layout(work, &SOURCES)?;
    let reg =
        registry::start_registry(&work.join("registry"), registry::RegistryConfig::default())?;
    let reference = format!("{}/bench/image:v1", reg.addr);
    registry::push_layout(&layout, "bench", &reference, None, None)?;
    let size: u64 = fs::read_dir(layout.join("blobs/sha256"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "bench: image of {layers} gzip layers, {:.1} MB of blobs, built and pushed in {:.1?}",
        size as f64 / 1e6,
        t.elapsed()
    );
    let mut ctd = Vec::new();
    let mut berth = Vec::new();
    for i in 0..RUNS {
        let c = containerd_once(work, &reference, i)?;
        let b = berth_once(work, &reg.addr, &reference, i)?;
        println!("bench: run {i}: containerd {c:.2?}, berth {b:.2?}");
        ctd.push(c);
        berth.push(b);
    }
    let (c, b) = (median(ctd), median(berth));
    println!(
        "bench: pull+unpack of {layers} layers, {:.1} MB from a local registry; \
         median of {RUNS}: containerd {c:.2?}, berth {b:.2?}; containerd/berth = {:.2}x",
        size as f64 / 1e6,
        c.as_secs_f64() / b.as_secs_f64()
    );
    Ok(())
}
