//! Preloaded images (engine/src/preload.rs): archives in a directory are imported when berthd
//! starts, once per archive version, past a broken archive, and a bad config section is
//! refused with its key.

use berth_test_support::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{archive, berthctl_ok, is_root, layer, manifest, try_start_berthd_config};

fn image_archive(name: &str, file: &str) -> Vec<u8> {
    let mut blobs = BTreeMap::new();
    let l = layer(&[(file, name.as_bytes())]);
    let m = manifest(&[&l], &mut blobs);
    archive(&[(name, m)], &blobs)
}

/// Waits until berthd logged `preload: done` `n` times (one per start).
fn wait_done(log: &Path, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches("preload: done").count() >= n {
            return text;
        }
        assert!(Instant::now() < deadline, "no `preload: done` in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn archives_are_imported_once_per_version_past_a_broken_one() {
    if !is_root() {
        println!("SKIP archives_are_imported_once_per_version_past_a_broken_one: unpacking into overlayfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(
        images.join("a.tar"),
        image_archive("example.com/preload/a:1", "a.txt"),
    )
    .unwrap();
    std::fs::write(images.join("broken.tar"), b"this is not a tar archive").unwrap();
    std::fs::write(
        images.join("c.tar"),
        image_archive("example.com/preload/c:1", "c.txt"),
    )
    .unwrap();
    std::fs::write(images.join("ignored.txt"), b"not an archive name").unwrap();
    let extra = format!(
        "[plugins.\"berth.preload.v1\"]\ndirs = [\"{}\", \"{}/missing\"]\n",
        images.display(),
        dir.display()
    );
    let log = dir.join("berthd.log");

    // First start: both good archives imported and unpacked; the broken one named.
    let started = Instant::now();
    let d = try_start_berthd_config(dir, &[], &extra, Some(&log)).expect("berthd starts");
    let text = wait_done(&log, 1);
    println!(
        "first start: preload done {:.3} s after spawning berthd",
        started.elapsed().as_secs_f64()
    );
    let ls = berthctl_ok(&d.socket, &["images", "ls"]);
    assert!(ls.contains("example.com/preload/a:1"), "{ls}");
    assert!(ls.contains("example.com/preload/c:1"), "{ls}");
    let broken_line = text
        .lines()
        .find(|l| l.contains("preload: import failed"))
        .unwrap_or_else(|| panic!("broken archive not reported:\n{text}"));
    assert!(broken_line.contains("broken.tar"), "{broken_line}");
    println!("reported: {broken_line}");
    assert_eq!(text.matches("preload: imported").count(), 2, "{text}");
    assert!(!text.contains("ignored.txt"), "{text}");
    // Unpacked: the image's chain is in the default snapshotter.
    let snaps = berthctl_ok(&d.socket, &["snapshots", "ls"]);
    assert!(snaps.contains("sha256:"), "nothing unpacked:\n{snaps}");
    drop(d);

    // Second start: nothing new to import.
    let d = try_start_berthd_config(dir, &[], &extra, Some(&log)).expect("berthd restarts");
    let text = wait_done(&log, 2);
    // The log of each start ends with its `preload: done` line.
    let second = text.split("preload: done").nth(1).unwrap_or_default();
    assert_eq!(
        second.matches("preload: imported").count(),
        0,
        "re-imported:\n{second}"
    );
    drop(d);

    // A new version of c.tar (another OS image): imported again, under its new name.
    std::fs::write(
        images.join("c.tar"),
        image_archive("example.com/preload/c:2", "c2.txt"),
    )
    .unwrap();
    let d = try_start_berthd_config(dir, &[], &extra, Some(&log)).expect("berthd restarts");
    let text = wait_done(&log, 3);
    let third = text.split("preload: done").nth(2).unwrap_or_default();
    assert_eq!(third.matches("preload: imported").count(), 1, "{third}");
    let ls = berthctl_ok(&d.socket, &["images", "ls"]);
    assert!(ls.contains("example.com/preload/c:2"), "{ls}");
}

#[test]
fn a_bad_preload_section_stops_berthd_with_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("berthd.log");
    let extra = "[plugins.\"berth.preload.v1\"]\ndirs = [\"relative/dir\"]\n";
    let status = match try_start_berthd_config(dir, &[], extra, Some(&log)) {
        Ok(_) => panic!("berthd accepted a relative preload dir"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Some(78), "exit status {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("[plugins.\"berth.preload.v1\"]")
            && text.contains("dirs: \"relative/dir\" must be an absolute path"),
        "{text}"
    );
    let extra = "[plugins.\"berth.preload.v1\"]\ndirectories = []\n";
    assert!(try_start_berthd_config(dir, &[], extra, Some(&log)).is_err());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("unknown field `directories`"), "{text}");
}
