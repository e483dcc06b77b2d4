//! Crash safety of the storage core: berthd is SIGKILLed at planned points
//! (`BERTH_FAILPOINT`, see `engine/src/failpoint.rs`) in every phase of an image import —
//! ingest write, commit rename, metadata commit, unpack (mid-layer and before the snapshot
//! commit) — and of a GC sweep, then restarted. After each kill: every listed blob hashes to
//! its digest, every listed image mounts with its complete tree, no snapshot of an interrupted
//! unpack is visible, and the same import (or GC) then succeeds. At least 50 kills in all.
//! Root only (snapshot mounts).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use berth_test_support::support;
use support::*;

const IMAGE: &str = "example.test/crash:1";

/// Three layers of ten files each; the top one deletes one file of the base.
fn test_archive() -> Vec<u8> {
    let names: Vec<Vec<(String, Vec<u8>)>> = (0..3)
        .map(|l| {
            (0..10)
                .map(|f| {
                    (
                        format!("layer{l}/file{f}"),
                        format!("{l}-{f}-").repeat(500).into_bytes(),
                    )
                })
                .collect()
        })
        .collect();
    let mut layers: Vec<Vec<u8>> = Vec::new();
    for (i, files) in names.iter().enumerate() {
        let mut refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        if i == 2 {
            refs.push(("layer0/.wh.file0", b""));
        }
        layers.push(layer(&refs));
    }
    let mut blobs = BTreeMap::new();
    let m = manifest(
        &layers.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        &mut blobs,
    );
    archive(&[(IMAGE, m)], &blobs)
}

/// Waits for a berthd killed by its failpoint; returns whether it died (false: it is still
/// running, the point was never reached, and it is stopped normally by the caller).
fn died(d: &mut Berthd) -> bool {
    for _ in 0..250 {
        if let Ok(Some(_)) = d.child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Nothing half-done is visible: blobs verify, listed images mount complete, no leftover
/// extract snapshots.
fn check_consistent(dir: &Path, s: &Path, phase: &str) {
    let list = berthctl_ok(s, &["content", "ls", "-q"]);
    for digest in list.lines().filter(|l| !l.is_empty()) {
        let out = berthctl(s, &["content", "get", digest]);
        assert!(
            out.status.success(),
            "{phase}: listed blob {digest} cannot be read"
        );
        let actual = format!("sha256:{:x}", Sha256::digest(&out.stdout));
        assert_eq!(actual, digest, "{phase}: listed blob is partial");
    }
    let snaps = berthctl_ok(s, &["snapshots", "ls", "-q"]);
    assert!(
        !snaps.contains("extract-"),
        "{phase}: an interrupted unpack's snapshot is visible:\n{snaps}"
    );
    let images = berthctl_ok(s, &["images", "ls", "-q"]);
    for name in images.lines().filter(|l| !l.is_empty()) {
        check_tree(dir, s, name, phase);
    }
}

fn check_tree(dir: &Path, s: &Path, name: &str, phase: &str) {
    let target = dir.join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    berthctl_ok(s, &["images", "mount", name, target.to_str().unwrap()]);
    let mut problems = Vec::new();
    for l in 0..3 {
        for f in 0..10 {
            let path = target.join(format!("layer{l}/file{f}"));
            let expected = format!("{l}-{f}-").repeat(500).into_bytes();
            match std::fs::read(&path) {
                Ok(data) if l == 0 && f == 0 => problems.push(format!(
                    "{} not whited out ({} bytes)",
                    path.display(),
                    data.len()
                )),
                Ok(data) if data != expected => {
                    problems.push(format!("{} has wrong contents", path.display()))
                }
                Ok(_) => {}
                Err(_) if l == 0 && f == 0 => {}
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    berthctl_ok(s, &["images", "unmount", target.to_str().unwrap()]);
    assert!(
        problems.is_empty(),
        "{phase}: image {name} is incomplete: {problems:#?}"
    );
}

#[test]
fn killed_at_planned_points_leaves_nothing_half_done() {
    if !is_root() {
        eprintln!("SKIP killed_at_planned_points_leaves_nothing_half_done: needs root (mounts)");
        return;
    }
    let archive_bytes = test_archive();
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    let import_points: &[(&str, &[u64])] = &[
        ("content.write.chunk", &[1, 2, 3, 4, 5, 6]),
        ("content.commit.before_rename", &[1, 2, 3, 4, 5]),
        ("content.commit.after_rename", &[1, 2, 3, 4, 5]),
        (
            "metadata.before_commit",
            &[
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
            ],
        ),
        (
            "unpack.layer.entry",
            &[1, 4, 7, 10, 11, 13, 16, 19, 21, 22, 25, 28, 31],
        ),
        ("unpack.layer.before_commit", &[1, 2, 3]),
    ];
    for (point, hits) in import_points {
        for n in *hits {
            let dir = tempfile::tempdir().unwrap();
            let archive_path = dir.path().join("image.tar");
            std::fs::write(&archive_path, &archive_bytes).unwrap();
            let spec = format!("{point}@{n}");
            let phase = format!("import killed at {spec}");
            {
                let mut d = match try_start_berthd_with(
                    dir.path(),
                    &[("BERTH_FAILPOINT", spec.as_str())],
                ) {
                    Ok(d) => d,
                    Err(_) => {
                        // Killed while opening its stores (start-up transactions).
                        *kills.entry(point).or_default() += 1;
                        let d = start_berthd(dir.path());
                        check_consistent(
                            dir.path(),
                            &d.socket,
                            &format!("start-up killed at {spec}"),
                        );
                        continue;
                    }
                };
                let out = berthctl(
                    &d.socket,
                    &["images", "import", archive_path.to_str().unwrap()],
                );
                if !died(&mut d) {
                    assert!(
                        out.status.success(),
                        "{phase}: not reached, yet the import failed"
                    );
                    continue;
                }
                *kills.entry(point).or_default() += 1;
            }
            let d = start_berthd(dir.path());
            check_consistent(dir.path(), &d.socket, &phase);
            let out = berthctl_ok(
                &d.socket,
                &["images", "import", archive_path.to_str().unwrap()],
            );
            assert!(out.contains(IMAGE), "{phase}: re-import: {out}");
            check_tree(
                dir.path(),
                &d.socket,
                IMAGE,
                &format!("{phase}, then re-imported"),
            );
        }
    }

    // GC sweep: the image is removed, then a collection is killed half-way.
    for point in ["gc.sweep.record", "gc.sweep.blob"] {
        for n in [1u64, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let archive_path = dir.path().join("image.tar");
            std::fs::write(&archive_path, &archive_bytes).unwrap();
            {
                let d = start_berthd(dir.path());
                berthctl_ok(
                    &d.socket,
                    &["images", "import", archive_path.to_str().unwrap()],
                );
            }
            let spec = format!("{point}@{n}");
            let phase = format!("gc killed at {spec}");
            {
                let Ok(mut d) =
                    try_start_berthd_with(dir.path(), &[("BERTH_FAILPOINT", spec.as_str())])
                else {
                    panic!("{phase}: berthd died at start-up");
                };
                // Removing the image triggers a collection; `gc` runs one more.
                let _ = berthctl(&d.socket, &["images", "rm", IMAGE]);
                let _ = berthctl(&d.socket, &["gc"]);
                if !died(&mut d) {
                    continue;
                }
                *kills.entry(point).or_default() += 1;
            }
            let d = start_berthd(dir.path());
            check_consistent(dir.path(), &d.socket, &phase);
            berthctl_ok(&d.socket, &["gc"]);
            let left = berthctl_ok(&d.socket, &["content", "ls", "-q"]);
            assert!(
                left.trim().is_empty(),
                "{phase}: content left after a full GC: {left}"
            );
            let out = berthctl_ok(
                &d.socket,
                &["images", "import", archive_path.to_str().unwrap()],
            );
            assert!(out.contains(IMAGE), "{phase}: re-import: {out}");
            check_tree(
                dir.path(),
                &d.socket,
                IMAGE,
                &format!("{phase}, then re-imported"),
            );
        }
    }

    let total: usize = kills.values().sum();
    println!("crash-safety kills by phase:");
    for (point, n) in &kills {
        println!("  {point:32} {n}");
    }
    println!("  total {total}");
    for (point, _) in import_points {
        assert!(
            kills.get(point).copied().unwrap_or(0) > 0,
            "phase {point} was never reached"
        );
    }
    assert!(
        kills.get("gc.sweep.blob").copied().unwrap_or(0) > 0,
        "the GC blob sweep was never reached"
    );
    assert!(total >= 50, "only {total} kills");
}
