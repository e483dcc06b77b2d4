//! Import → metadata → unpack into each snapshotter, end to end on the host (root): an OCI
//! archive with two images sharing their base layer is imported into a content store, each
//! image is unpacked into overlayfs and native snapshots named by chain ID, the top snapshot
//! is mounted and its tree checked (whiteout applied, files present), the second image reuses
//! the shared base snapshot, and the config records carry the GC label naming the top
//! snapshot.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_engine::content::{Digest, LocalStore};
use berth_engine::images::{self, import::ImportOptions, Platform};
use berth_engine::metadata::Db;
use berth_engine::snapshots::{native::Native, overlay::Overlay, Snapshotter};
use berth_engine::unpack;

use berth_test_support::support;
use support::*;

fn check(snapshotter_name: &str, make: impl Fn(&Path) -> Arc<dyn Snapshotter>) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("content")).unwrap();
    let db = Db::open(dir.path()).unwrap();
    let sn = make(&dir.path().join("snapshots"));

    let base = layer(&[
        ("etc/os-release", b"ID=test\n"),
        ("bin/tool", b"v1"),
        ("tmp/gone", b"x"),
    ]);
    let app = layer(&[
        ("app/run", b"run"),
        ("tmp/.wh.gone", b""),
        ("bin/tool", b"v2"),
    ]);
    let other = layer(&[("other/file", b"other")]);
    let mut blobs = BTreeMap::new();
    let m1 = manifest(&[&base, &app], &mut blobs);
    let m2 = manifest(&[&base, &other], &mut blobs);
    let tar = archive(
        &[("example.test/app:1", m1), ("example.test/other:1", m2)],
        &blobs,
    );

    let report =
        images::import::import_archive(&store, tar.as_slice(), &ImportOptions::default()).unwrap();
    assert_eq!(report.images.len(), 2);
    let platform = Platform::default();

    let mut first = None;
    for imported in &report.images {
        let resolved = images::resolve(&store, &imported.target, &platform).unwrap();
        let result = unpack::unpack(
            &db,
            &store,
            "default",
            snapshotter_name,
            sn.as_ref(),
            &resolved,
            None,
        )
        .unwrap();
        println!(
            "{snapshotter_name}: {}: applied {} reused {} ({} entries, {} bytes) in {} ms",
            imported.name.as_deref().unwrap_or("?"),
            result.applied,
            result.reused,
            result.entries,
            result.bytes,
            result.millis
        );
        if first.is_none() {
            assert_eq!((result.applied, result.reused), (2, 0));
            first = Some(resolved.clone());
        } else {
            assert_eq!(
                (result.applied, result.reused),
                (1, 1),
                "the shared base layer is reused"
            );
        }
        // The config record carries the GC reference to the top snapshot.
        let config: Digest = resolved
            .config_descriptor
            .digest()
            .to_string()
            .parse()
            .unwrap();
        let rec = db.content().get("default", &config).unwrap();
        let label = format!("containerd.io/gc.ref.snapshot.{snapshotter_name}");
        assert_eq!(
            rec.labels.get(&label),
            Some(&resolved.top_chain_id().unwrap().to_string())
        );
    }

    // Mount the first image's top snapshot through a view and check the merged tree.
    let top = first.unwrap().top_chain_id().unwrap();
    let mounts = sn
        .view(
            "default/check-view",
            &unpack::backend_name("default", &top),
            Default::default(),
        )
        .unwrap();
    let target = dir.path().join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    berth_api::mount::mount_all(&mounts, &target).unwrap();
    let read = |p: &str| std::fs::read(target.join(p));
    let results = (
        read("etc/os-release"),
        read("bin/tool"),
        read("app/run"),
        target.join("tmp/gone").exists(),
    );
    let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    assert_eq!(results.0.unwrap(), b"ID=test\n");
    assert_eq!(results.1.unwrap(), b"v2", "upper layer wins");
    assert_eq!(results.2.unwrap(), b"run");
    assert!(!results.3, "whiteout removed tmp/gone");
    // Records: three chain snapshots in the namespace.
    let records = db
        .snapshots()
        .list("default", Some(snapshotter_name))
        .unwrap();
    assert_eq!(records.len(), 3, "{records:#?}");
}

#[test]
fn import_and_unpack_into_overlayfs() {
    if !is_root() {
        eprintln!("SKIP import_and_unpack_into_overlayfs: needs root (mounts)");
        return;
    }
    check("overlayfs", |root| Arc::new(Overlay::open(root).unwrap()));
}

#[test]
fn import_and_unpack_into_native() {
    if !is_root() {
        eprintln!("SKIP import_and_unpack_into_native: needs root (mounts, ownership)");
        return;
    }
    check("native", |root| Arc::new(Native::open(root).unwrap()));
}

#[test]
fn berthctl_imports_mounts_exports_and_reimports() {
    if !is_root() {
        eprintln!("SKIP berthctl_imports_mounts_exports_and_reimports: needs root (mounts)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = layer(&[
        ("etc/os-release", b"ID=test\n"),
        ("bin/tool", b"v1"),
        ("tmp/gone", b"x"),
    ]);
    let app = layer(&[
        ("app/run", b"run"),
        ("tmp/.wh.gone", b""),
        ("bin/tool", b"v2"),
    ]);
    let mut blobs = BTreeMap::new();
    let m1 = manifest(&[&base, &app], &mut blobs);
    let archive_path = dir.path().join("app.tar");
    std::fs::write(
        &archive_path,
        archive(&[("example.test/app:1", m1)], &blobs),
    )
    .unwrap();

    let d = start_berthd(dir.path());
    let s = &d.socket;
    let out = berthctl_ok(s, &["images", "import", archive_path.to_str().unwrap()]);
    println!("{out}");
    assert!(
        out.contains("example.test/app:1") && out.contains("2 layers applied"),
        "{out}"
    );
    let ls = berthctl_ok(s, &["images", "ls", "-q"]);
    assert_eq!(ls.trim(), "example.test/app:1");
    // The same archive again: nothing to apply.
    let again = berthctl_ok(
        s,
        &[
            "images",
            "import",
            "--format",
            "json",
            archive_path.to_str().unwrap(),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(v["images"][0]["layers_reused"], 2, "{again}");

    // Mount, read, unmount.
    let target = dir.path().join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    berthctl_ok(
        s,
        &[
            "images",
            "mount",
            "example.test/app:1",
            target.to_str().unwrap(),
        ],
    );
    let tool = std::fs::read(target.join("bin/tool"));
    let gone = target.join("tmp/gone").exists();
    let ro = std::fs::write(target.join("new-file"), b"x").is_err();
    berthctl_ok(s, &["images", "unmount", target.to_str().unwrap()]);
    assert_eq!(tool.unwrap(), b"v2");
    assert!(!gone, "whiteout");
    assert!(ro, "the view is read-only");

    // Export, then import the export into a second namespace.
    let exported = dir.path().join("export.tar");
    berthctl_ok(
        s,
        &[
            "images",
            "export",
            "-o",
            exported.to_str().unwrap(),
            "example.test/app:1",
        ],
    );
    let out = berthctl_ok(
        s,
        &[
            "-n",
            "second",
            "images",
            "import",
            exported.to_str().unwrap(),
        ],
    );
    assert!(out.contains("example.test/app:1"), "{out}");
    // A missing image and a broken archive are clear errors.
    let missing = berthctl(
        s,
        &[
            "images",
            "export",
            "-o",
            dir.path().join("x.tar").to_str().unwrap(),
            "nope:1",
        ],
    );
    assert!(!missing.status.success());
    let msg = String::from_utf8_lossy(&missing.stderr);
    assert!(msg.contains("nope:1") || msg.contains("NOT_FOUND"), "{msg}");
    assert!(!dir.path().join("x.tar").exists() && !dir.path().join("x.tar.partial").exists());
    let broken = dir.path().join("broken.tar");
    std::fs::write(&broken, &std::fs::read(&archive_path).unwrap()[..3000]).unwrap();
    let bad = berthctl(s, &["images", "import", broken.to_str().unwrap()]);
    assert!(!bad.status.success());
    println!(
        "broken archive: {}",
        String::from_utf8_lossy(&bad.stderr).trim()
    );
}
