//! Tests of the metadata database on real files (temporary directories), with a real
//! [`LocalStore`] for reconcile and garbage collection.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;

use super::gc::{self, SnapshotSweeper, SweepError};
use super::schema::{self, META, VERSION_KEY, WRITE_COMPAT_KEY};
use super::*;
use crate::content::{Digest, Ingester, LocalStore, Manager};
use berth_api::errdefs::{chain, Classify, Kind};

fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    (dir, db)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn desc(digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest,
        size,
        annotations: BTreeMap::new(),
    }
}

fn raw_version(path: &Path) -> Option<u64> {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_read().unwrap();
    let t = txn.open_table(META).unwrap();
    let v = t.get(VERSION_KEY).unwrap().map(|g| g.value());
    v
}

#[test]
fn fresh_file_is_initialised_and_reopened_as_current() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.opened(), Opened::Initialised);
    assert_eq!(db.path(), dir.path().join("metadata.redb"));
    drop(db);
    assert_eq!(
        raw_version(&dir.path().join(Db::FILE)),
        Some(SCHEMA_VERSION)
    );
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.opened(), Opened::Current);
}

#[test]
fn newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Db::FILE);
    drop(Db::open(dir.path()).unwrap());
    // A newer berthd that changed what older ones would misread (write_compat = its version).
    stamp_as_newer(&path, 99, 99);
    let before = fs::read(&path).unwrap();
    let err = Db::open(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 99,
                supported: SCHEMA_VERSION,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("schema version 99") && msg.contains(&format!("version {SCHEMA_VERSION}")),
        "{msg}"
    );
    assert_eq!(err.kind(), Kind::FailedPrecondition);
    assert!(
        msg.contains(&format!(
            "no copy saved before its migration ({}.schema-{SCHEMA_VERSION})",
            path.display()
        )),
        "{msg}"
    );
    assert!(
        fs::read(&path).unwrap() == before,
        "the file must not be rewritten"
    );
    assert_eq!(raw_version(&path), Some(99));
}

/// Writes a newer berthd's stamp (and an extra table only it knows) into `path`.
fn stamp_as_newer(path: &Path, version: u64, write_compat: u64) {
    let raw = redb::Database::create(path).unwrap();
    let txn = raw.begin_write().unwrap();
    {
        let mut meta = txn.open_table(META).unwrap();
        meta.insert(VERSION_KEY, version).unwrap();
        meta.insert(WRITE_COMPAT_KEY, write_compat).unwrap();
        let future: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("future");
        txn.open_table(future).unwrap().insert("k", "v").unwrap();
    }
    txn.commit().unwrap();
}

fn image_names(db: &Db) -> Vec<String> {
    db.images()
        .list("default")
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect()
}

fn add_image(db: &Db, name: &str) {
    db.images()
        .create(
            "default",
            Image::new(name, desc(Digest::of(name.as_bytes()), 1), Labels::new()),
        )
        .unwrap();
}

#[test]
fn newer_schema_that_allows_older_writers_is_used_without_downgrading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Db::FILE);
    add_image(&Db::open(dir.path()).unwrap(), "before");
    // A later berthd that only added a table keeps write_compat at this version.
    stamp_as_newer(&path, SCHEMA_VERSION + 1, SCHEMA_VERSION);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(
        db.opened(),
        Opened::NewerCompatible {
            found: SCHEMA_VERSION + 1
        }
    );
    add_image(&db, "during");
    assert_eq!(image_names(&db), ["before", "during"]);
    assert_eq!(db.sweep_suspended(), None);
    drop(db);
    assert_eq!(
        raw_version(&path),
        Some(SCHEMA_VERSION + 1),
        "never downgraded"
    );
    let raw = redb::Database::create(&path).unwrap();
    let txn = raw.begin_read().unwrap();
    let future: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("future");
    assert_eq!(
        txn.open_table(future)
            .unwrap()
            .get("k")
            .unwrap()
            .unwrap()
            .value(),
        "v",
        "the newer berthd's table is left alone"
    );
}

#[test]
fn rollback_across_an_incompatible_bump_restores_the_saved_copy_and_keeps_the_newer_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Db::FILE);
    let store = LocalStore::open(dir.path()).unwrap();
    let sweeper = DirSweeper {
        root: dir.path().join("snaps"),
    };
    add_image(&Db::open(dir.path()).unwrap(), "old-era");
    // The newer berthd's upgrade: it saves our file, then migrates (here: stamps) it and
    // records more (an image, and a blob only it knows about).
    let saved = schema::save_copy(&path, SCHEMA_VERSION).unwrap();
    assert_eq!(saved, copy_path(&path, SCHEMA_VERSION));
    stamp_as_newer(&path, SCHEMA_VERSION + 1, SCHEMA_VERSION + 1);
    {
        let raw = redb::Database::create(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        let img = Image::new("new-era", desc(Digest::of(b"n"), 1), Labels::new());
        txn.open_table(schema::IMAGES)
            .unwrap()
            .insert(("default", "new-era"), encode(&img).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let newer_bytes = fs::read(&path).unwrap();
    let newer_blob = put_blob(&store, b"pulled by the newer berthd");
    sweeper.add("newer-snap", None);

    // The A/B rollback boots this version again.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(
        db.opened(),
        Opened::RolledBack {
            found: SCHEMA_VERSION + 1
        }
    );
    assert_eq!(
        image_names(&db),
        ["old-era"],
        "the state saved at the upgrade"
    );
    let kept = copy_path(&path, SCHEMA_VERSION + 1);
    assert_eq!(
        fs::read(&kept).unwrap(),
        newer_bytes,
        "newer file kept byte for byte"
    );
    assert!(!saved.exists(), "the saved copy became the database");
    let reason = db
        .sweep_suspended()
        .expect("sweep suspended while a newer file is kept");
    assert!(reason.contains(&kept.display().to_string()), "{reason}");
    add_image(&db, "rollback-era");
    let r = gc::collect(&db, &store, &sweeper).unwrap();
    println!("gc during rollback: {r:?}");
    assert_eq!(r.suspended.as_deref(), Some(reason.as_str()));
    assert!(
        r.blobs.is_empty() && r.backend_snapshots.is_empty(),
        "{r:?}"
    );
    assert!(
        store.info(&newer_blob).is_ok(),
        "the newer berthd's blob survives"
    );
    assert_eq!(sweeper.backend_keys("dirs").unwrap(), ["newer-snap"]);
    drop(db);
    // Restarts during the rollback keep the suspension (it follows the kept file).
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.opened(), Opened::Current);
    assert!(db.sweep_suspended().is_some());
}

#[test]
fn a_file_kept_by_a_rollback_is_merged_back_when_its_version_runs_again() {
    // This binary in the newer role: its own file (this schema) was kept aside by a rollback
    // to a version 1 berthd, which worked on the copy saved before the migration.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Db::FILE);
    {
        let db = Db::open(dir.path()).unwrap();
        add_image(&db, "saved-at-upgrade");
        add_image(&db, "newer-era");
        db.leases()
            .create("default", "pull", Labels::new(), None)
            .unwrap();
    }
    fs::rename(&path, copy_path(&path, SCHEMA_VERSION)).unwrap();
    {
        // The version 1 file the older berthd went on with.
        let raw = redb::Database::create(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(VERSION_KEY, 1)
            .unwrap();
        let mut images = txn.open_table(schema::IMAGES).unwrap();
        for name in ["saved-at-upgrade", "rollback-era"] {
            let mut img = Image::new(name, desc(Digest::of(b"v1"), 2), Labels::new());
            img.labels.insert("written-by".into(), "v1".into());
            images
                .insert(("default", name), encode(&img).as_slice())
                .unwrap();
        }
        drop(images);
        txn.open_table(schema::NAMESPACES).unwrap();
        for t in [schema::CONTENT, schema::CONTAINERS] {
            txn.open_table(t).unwrap();
        }
        txn.open_table(schema::SNAPSHOTS).unwrap();
        txn.commit().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.opened(), Opened::Migrated { from: 1 });
    assert_eq!(
        image_names(&db),
        ["newer-era", "rollback-era", "saved-at-upgrade"],
        "union of both eras"
    );
    let both = db.images().get("default", "saved-at-upgrade").unwrap();
    assert_eq!(
        both.labels.get("written-by").map(String::as_str),
        Some("v1"),
        "a record in both keeps the later (rolled-back era) value"
    );
    assert_eq!(db.leases().list("default").unwrap().len(), 1);
    assert!(
        !copy_path(&path, SCHEMA_VERSION).exists(),
        "kept file merged and removed"
    );
    assert!(
        copy_path(&path, 1).exists(),
        "the version 1 file is saved before migrating"
    );
    assert_eq!(db.sweep_suspended(), None);
}

#[test]
fn version_1_is_migrated_in_place_keeping_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Db::FILE);
    // A version 1 file: no lease tables.
    {
        let raw = redb::Database::create(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(VERSION_KEY, 1)
            .unwrap();
        let now = SystemTime::now();
        let ns = Namespace {
            name: "old".into(),
            labels: labels(&[("a", "b")]),
            created_at: now,
            updated_at: now,
        };
        txn.open_table(schema::NAMESPACES)
            .unwrap()
            .insert("old", encode(&ns).as_slice())
            .unwrap();
        let img = Image::new(
            "docker.io/library/busybox:latest",
            desc(Digest::of(b"m"), 1),
            Labels::new(),
        );
        txn.open_table(schema::IMAGES)
            .unwrap()
            .insert(("old", img.name.as_str()), encode(&img).as_slice())
            .unwrap();
        for t in [schema::CONTENT, schema::CONTAINERS] {
            txn.open_table(t).unwrap();
        }
        txn.open_table(schema::SNAPSHOTS).unwrap();
        txn.commit().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.opened(), Opened::Migrated { from: 1 });
    assert_eq!(
        db.namespaces().get("old").unwrap().labels,
        labels(&[("a", "b")])
    );
    assert_eq!(db.images().list("old").unwrap().len(), 1);
    db.leases()
        .create("old", "l1", Labels::new(), None)
        .unwrap();
    drop(db);
    assert_eq!(raw_version(&path), Some(SCHEMA_VERSION));
    assert_eq!(Db::open(dir.path()).unwrap().opened(), Opened::Current);
}

#[test]
fn foreign_or_unknown_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(Db::FILE);
    {
        let raw = redb::Database::create(&path).unwrap();
        let txn = raw.begin_write().unwrap();
        let t: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("something");
        txn.open_table(t).unwrap().insert("x", 1).unwrap();
        txn.commit().unwrap();
    }
    let e = Db::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("not a berth metadata database") && e.contains("something"),
        "{e}"
    );
    fs::write(&path, b"not a database at all").unwrap();
    let e = chain(&Db::open(dir.path()).unwrap_err());
    assert!(
        e.contains(&path.display().to_string()) && e.contains("open"),
        "{e}"
    );
}

#[test]
fn namespaces_lifecycle_and_delete_refused_while_in_use() {
    let (_d, db) = db();
    let ns = db.namespaces();
    ns.create("team-a", labels(&[("owner", "x")])).unwrap();
    let e = ns.create("team-a", Labels::new()).unwrap_err();
    assert_eq!(e.kind(), Kind::AlreadyExists, "{e}");
    let e = ns.create("bad/name", Labels::new()).unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");

    let upd = ns
        .update("team-a", labels(&[("env", "ci")]), &["labels.env".into()])
        .unwrap();
    assert_eq!(upd.labels, labels(&[("env", "ci"), ("owner", "x")]));
    let upd = ns
        .update("team-a", Labels::new(), &["labels.owner".into()])
        .unwrap();
    assert_eq!(upd.labels, labels(&[("env", "ci")]));
    let e = ns
        .update("team-a", Labels::new(), &["name".into()])
        .unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");

    // Creating an object creates its namespace.
    let d = Digest::of(b"x");
    db.images()
        .create("team-b", Image::new("img", desc(d, 1), Labels::new()))
        .unwrap();
    db.leases()
        .create("team-b", "hold", Labels::new(), None)
        .unwrap();
    let names: Vec<String> = ns.list().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["team-a", "team-b"]);
    let e = ns.delete("team-b").unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition);
    assert!(e.to_string().contains("still holds images, leases"), "{e}");
    db.images().delete("team-b", "img").unwrap();
    db.leases().delete("team-b", "hold").unwrap();
    ns.delete("team-b").unwrap();
    assert_eq!(ns.delete("team-b").unwrap_err().kind(), Kind::NotFound);
    ns.delete("team-a").unwrap();
}

#[test]
fn images_are_validated_and_namespaced() {
    let (_d, db) = db();
    let im = db.images();
    let d = Digest::of(b"manifest");
    let a = im
        .create("default", Image::new("a:1", desc(d, 8), Labels::new()))
        .unwrap();
    assert_eq!(im.get("default", "a:1").unwrap(), a);
    assert_eq!(im.get("other", "a:1").unwrap_err().kind(), Kind::NotFound);
    assert_eq!(
        im.create("default", Image::new("a:1", desc(d, 8), Labels::new()))
            .unwrap_err()
            .kind(),
        Kind::AlreadyExists
    );
    for bad in [
        Image::new("", desc(d, 8), Labels::new()),
        Image::new("b", desc(d, 0), Labels::new()),
        Image::new(
            "b",
            Descriptor {
                media_type: String::new(),
                ..desc(d, 8)
            },
            Labels::new(),
        ),
    ] {
        let e = im.create("default", bad).unwrap_err();
        assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");
    }
    let d2 = Digest::of(b"manifest2");
    let mut upd = Image::new("a:1", desc(d2, 9), labels(&[("k", "v")]));
    upd.labels.insert("k".into(), "v".into());
    let got = im
        .update("default", upd.clone(), &["labels".into()])
        .unwrap();
    assert_eq!(
        (got.target.digest, got.labels.len()),
        (d, 1),
        "only labels changed"
    );
    // A labels-only update need not carry a valid target; a target update must.
    let only_labels = Image::new("a:1", desc(d2, 0), labels(&[("k", "w")]));
    let got = im
        .update("default", only_labels.clone(), &["labels.k".into()])
        .unwrap();
    assert_eq!((got.labels["k"].as_str(), got.target.size), ("w", 8));
    let e = im
        .update("default", only_labels, &["target".into()])
        .unwrap_err();
    assert_eq!(e.kind(), Kind::InvalidArgument, "{e}");
    let got = im.update("default", upd, &["target".into()]).unwrap();
    assert_eq!(got.target.digest, d2);
    assert!(got.updated_at >= got.created_at);
    assert_eq!(im.list("default").unwrap().len(), 1);
    im.delete("default", "a:1").unwrap();
    let e = im.delete("default", "a:1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "image \"a:1\" in namespace \"default\" not found"
    );
}

#[test]
fn content_records_are_per_namespace() {
    let (_d, db) = db();
    let c = db.content();
    let d = Digest::of(b"blob");
    let (rec, created) = c.put_record("a", d, 4, labels(&[("x", "1")])).unwrap();
    assert!(created);
    let (rec2, created) = c.put_record("a", d, 4, labels(&[("y", "2")])).unwrap();
    assert!(!created);
    assert_eq!(rec2.created_at, rec.created_at);
    assert_eq!(rec2.labels, labels(&[("x", "1"), ("y", "2")]));
    assert_eq!(
        c.put_record("a", d, 5, Labels::new()).unwrap_err().kind(),
        Kind::InvalidArgument
    );
    assert_eq!(c.get("b", &d).unwrap_err().kind(), Kind::NotFound);
    assert!(c.list("b").unwrap().is_empty());
    c.put_record("b", d, 4, Labels::new()).unwrap();
    c.delete("a", &d).unwrap();
    assert_eq!(c.get("b", &d).unwrap().size, 4);
    assert_eq!(c.delete("a", &d).unwrap_err().kind(), Kind::NotFound);
    let u = c.update("b", &d, labels(&[("z", "3")]), &[]).unwrap();
    assert_eq!(u.labels, labels(&[("z", "3")]));
}

#[test]
fn snapshot_records_keep_parent_chains() {
    let (_d, db) = db();
    let s = db.snapshots();
    let e = s
        .create(
            "ns",
            SnapshotRecord::new(
                "overlayfs",
                "child",
                "2",
                Some("base".into()),
                Labels::new(),
            ),
        )
        .unwrap_err();
    assert_eq!(e.kind(), Kind::NotFound, "{e}");
    s.create(
        "ns",
        SnapshotRecord::new("overlayfs", "base", "1", None, Labels::new()),
    )
    .unwrap();
    s.create(
        "ns",
        SnapshotRecord::new(
            "overlayfs",
            "child",
            "2",
            Some("base".into()),
            Labels::new(),
        ),
    )
    .unwrap();
    s.create(
        "ns",
        SnapshotRecord::new("native", "n", "1", None, Labels::new()),
    )
    .unwrap();
    let e = s.delete("ns", "overlayfs", "base").unwrap_err();
    assert_eq!(e.kind(), Kind::FailedPrecondition);
    assert!(e.to_string().contains("children [\"child\"]"), "{e}");
    assert_eq!(s.list("ns", Some("overlayfs")).unwrap().len(), 2);
    assert_eq!(s.list("ns", None).unwrap().len(), 3);
    assert_eq!(s.get("ns", "overlayfs", "child").unwrap().backend_key, "2");
    s.delete("ns", "overlayfs", "child").unwrap();
    s.delete("ns", "overlayfs", "base").unwrap();
    assert!(s
        .create(
            "ns",
            SnapshotRecord::new("bad name", "k", "1", None, Labels::new())
        )
        .is_err());
}

#[test]
fn containers_round_trip_their_spec() {
    let (_d, db) = db();
    let now = SystemTime::now();
    let c = Container {
        id: "web-1".into(),
        image: "busybox".into(),
        snapshotter: "overlayfs".into(),
        snapshot_key: "web-1".into(),
        runtime: "io.containerd.runc.v2".into(),
        spec: br#"{"ociVersion":"1.0.2"}"#.to_vec(),
        labels: Labels::new(),
        created_at: now,
        updated_at: now,
    };
    db.containers().create("default", c.clone()).unwrap();
    let got = db.containers().get("default", "web-1").unwrap();
    assert_eq!(got.spec, c.spec);
    let e = db.containers().create("default", c.clone()).unwrap_err();
    assert_eq!(e.kind(), Kind::AlreadyExists);
    let mut c2 = c.clone();
    c2.runtime = "io.containerd.runc.v1".into();
    c2.image = "other".into();
    let got = db
        .containers()
        .update("default", c2, &["runtime".into()])
        .unwrap();
    assert_eq!(
        (got.runtime.as_str(), got.image.as_str()),
        ("io.containerd.runc.v1", "busybox")
    );
    db.containers().delete("default", "web-1").unwrap();
    assert!(db.containers().list("default").unwrap().is_empty());
}

#[test]
fn a_container_and_its_snapshot_record_are_stored_and_removed_together() {
    let (_d, db) = db();
    let now = SystemTime::now();
    let c = Container {
        id: "app".into(),
        image: "busybox".into(),
        snapshotter: "overlayfs".into(),
        snapshot_key: "app".into(),
        runtime: "berth".into(),
        spec: b"{}".to_vec(),
        labels: Labels::new(),
        created_at: now,
        updated_at: now,
    };
    let snap =
        |key: &str| SnapshotRecord::new("overlayfs", key, "default/app", None, Labels::new());
    db.containers()
        .create_with_snapshot("default", snap("app"), c.clone())
        .unwrap();
    assert!(db.snapshots().get("default", "overlayfs", "app").is_ok());
    // A second create of the same id fails as a whole: its snapshot record is not kept.
    let e = db
        .containers()
        .create_with_snapshot("default", snap("app-2"), c.clone())
        .unwrap_err();
    assert_eq!(e.kind(), Kind::AlreadyExists);
    assert!(db.snapshots().get("default", "overlayfs", "app-2").is_err());

    let (removed, record) = db
        .containers()
        .delete_with_snapshot("default", "app")
        .unwrap();
    assert_eq!(removed.id, "app");
    assert_eq!(
        record.map(|r| r.backend_key),
        Some("default/app".to_owned())
    );
    assert!(db.containers().get("default", "app").is_err());
    assert!(db.snapshots().get("default", "overlayfs", "app").is_err());

    // A snapshot record someone built on stays (and is not handed back for removal).
    db.containers()
        .create_with_snapshot("default", snap("app"), c)
        .unwrap();
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new("overlayfs", "child", "9", Some("app".into()), Labels::new()),
        )
        .unwrap();
    let (_, record) = db
        .containers()
        .delete_with_snapshot("default", "app")
        .unwrap();
    assert!(record.is_none());
    assert!(db.snapshots().get("default", "overlayfs", "app").is_ok());
}

#[test]
fn leases_hold_resources() {
    let (_d, db) = db();
    let l = db.leases();
    l.create("default", "pull-1", Labels::new(), None).unwrap();
    let d = Digest::of(b"layer");
    let snap = LeaseResource::Snapshot {
        snapshotter: "overlayfs".into(),
        key: "k/1".into(),
    };
    l.add_resource("default", "pull-1", &LeaseResource::Content(d))
        .unwrap();
    l.add_resource("default", "pull-1", &LeaseResource::Content(d))
        .unwrap();
    l.add_resource(
        "default",
        "pull-1",
        &LeaseResource::Ingest("layer-x".into()),
    )
    .unwrap();
    l.add_resource("default", "pull-1", &snap).unwrap();
    assert_eq!(l.resources("default", "pull-1").unwrap().len(), 3);
    assert_eq!(
        l.add_resource("default", "nope", &snap).unwrap_err().kind(),
        Kind::NotFound
    );
    l.delete_resource("default", "pull-1", &snap).unwrap();
    assert_eq!(
        l.delete_resource("default", "pull-1", &snap)
            .unwrap_err()
            .kind(),
        Kind::NotFound
    );
    assert_eq!(
        LeaseResource::decode("snapshots/overlayfs", "k").unwrap(),
        LeaseResource::Snapshot {
            snapshotter: "overlayfs".into(),
            key: "k".into()
        }
    );
    assert!(LeaseResource::decode("bogus", "k").is_err());
    l.delete("default", "pull-1").unwrap();
    // The resource rows went with it: a new lease of the same id starts empty.
    l.create("default", "pull-1", Labels::new(), None).unwrap();
    assert!(l.resources("default", "pull-1").unwrap().is_empty());
}

fn put_blob(store: &LocalStore, data: &[u8]) -> Digest {
    let mut w = store
        .writer(&format!("ref-{}", Digest::of(data)), None)
        .unwrap();
    w.write(data).unwrap();
    match w.commit(data.len() as u64, Digest::of(data)) {
        Ok(d) => d,
        Err(crate::content::Error::AlreadyExists { digest }) => digest,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn reconcile_removes_records_of_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let db = Db::open(dir.path()).unwrap();
    let kept = put_blob(&store, b"kept");
    let lost = put_blob(&store, b"lost");
    db.content()
        .put_record("a", kept, 4, Labels::new())
        .unwrap();
    db.content()
        .put_record("a", lost, 4, Labels::new())
        .unwrap();
    db.content()
        .put_record("b", lost, 4, Labels::new())
        .unwrap();
    let orphan = put_blob(&store, b"orphan blob, no record");
    store.delete(&lost).unwrap();
    let r = db.reconcile(&store).unwrap();
    assert_eq!(
        r.removed_content_records,
        vec![
            ("a".to_string(), lost.to_string()),
            ("b".to_string(), lost.to_string())
        ]
    );
    assert!(db.content().get("a", &kept).is_ok());
    assert!(
        store.info(&orphan).is_ok(),
        "blobs without records are left for gc"
    );
    assert!(db
        .reconcile(&store)
        .unwrap()
        .removed_content_records
        .is_empty());
}

/// A snapshot backend on a real directory: one directory per backend key, with a `parent`
/// file; it refuses to remove a snapshot that still has children, like real snapshotters,
/// and fails on one whose directory holds a `busy` file.
struct DirSweeper {
    root: PathBuf,
}

impl DirSweeper {
    fn add(&self, key: &str, parent: Option<&str>) {
        let d = self.root.join(key);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("parent"), parent.unwrap_or("")).unwrap();
    }

    fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = fs::read_dir(&self.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        k.sort();
        k
    }
}

impl SnapshotSweeper for DirSweeper {
    fn snapshotters(&self) -> Vec<String> {
        vec!["dirs".into()]
    }

    fn backend_keys(&self, _: &str) -> Result<Vec<String>, SweepError> {
        Ok(self.keys())
    }

    fn remove(&self, _: &str, key: &str) -> Result<(), SweepError> {
        for other in self.keys() {
            if fs::read_to_string(self.root.join(&other).join("parent"))? == key {
                return Err(format!("{key} has child {other}").into());
            }
        }
        if self.root.join(key).join("busy").exists() {
            return Err(format!("{key} is busy").into());
        }
        fs::remove_dir_all(self.root.join(key))?;
        Ok(())
    }
}

#[test]
fn gc_marks_from_roots_and_sweeps_records_blobs_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let db = Db::open(dir.path()).unwrap();
    let sweeper = DirSweeper {
        root: dir.path().join("snaps"),
    };

    // An image: manifest → config + layer by gc.ref labels; the layer refers to its snapshot.
    let config = put_blob(&store, b"config");
    let layer = put_blob(&store, b"layer-data");
    let manifest = put_blob(&store, b"manifest");
    let c = db.content();
    c.put_record("default", config, 6, Labels::new()).unwrap();
    c.put_record(
        "default",
        layer,
        10,
        labels(&[("containerd.io/gc.ref.snapshot.dirs", "layer-snap")]),
    )
    .unwrap();
    c.put_record(
        "default",
        manifest,
        8,
        labels(&[
            ("containerd.io/gc.ref.content.config", &config.to_string()),
            ("containerd.io/gc.ref.content.l.0", &layer.to_string()),
        ]),
    )
    .unwrap();
    db.images()
        .create(
            "default",
            Image::new("img", desc(manifest, 8), Labels::new()),
        )
        .unwrap();
    sweeper.add("b-layer", None);
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new("dirs", "layer-snap", "b-layer", None, Labels::new()),
        )
        .unwrap();

    // A container's snapshot chain on top of it.
    sweeper.add("b-rw", Some("b-layer"));
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new(
                "dirs",
                "rw",
                "b-rw",
                Some("layer-snap".into()),
                Labels::new(),
            ),
        )
        .unwrap();
    let now = SystemTime::now();
    db.containers()
        .create(
            "default",
            Container {
                id: "c1".into(),
                image: String::new(),
                snapshotter: "dirs".into(),
                snapshot_key: "rw".into(),
                runtime: String::new(),
                spec: Vec::new(),
                labels: Labels::new(),
                created_at: now,
                updated_at: now,
            },
        )
        .unwrap();

    // Garbage: a content record, a blob with no record at all, a snapshot chain of 3.
    let junk = put_blob(&store, b"junk junk");
    c.put_record("default", junk, 9, Labels::new()).unwrap();
    let stray = put_blob(&store, b"stray");
    sweeper.add("g1", None);
    sweeper.add("g2", Some("g1"));
    sweeper.add("g3", Some("g2"));
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new("dirs", "g1", "g1", None, Labels::new()),
        )
        .unwrap();
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new("dirs", "g2", "g2", Some("g1".into()), Labels::new()),
        )
        .unwrap();
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new("dirs", "g3", "g3", Some("g2".into()), Labels::new()),
        )
        .unwrap();
    // An orphaned backend snapshot (record removed, crash before the backend removal).
    sweeper.add("orphan", None);

    // Kept: a gc.root content record; a blob shared with a namespace that still needs it
    // through a lease; a leased snapshot.
    let rooted = put_blob(&store, b"rooted");
    c.put_record("default", rooted, 6, labels(&[(gc::LABEL_ROOT, "")]))
        .unwrap();
    let shared = put_blob(&store, b"shared");
    c.put_record("default", shared, 6, Labels::new()).unwrap();
    c.put_record("other", shared, 6, Labels::new()).unwrap();
    db.leases()
        .create("other", "hold", Labels::new(), None)
        .unwrap();
    db.leases()
        .add_resource("other", "hold", &LeaseResource::Content(shared))
        .unwrap();
    // An expired lease protects nothing and is deleted.
    let leased = put_blob(&store, b"leased by an expired lease");
    c.put_record("other", leased, 26, Labels::new()).unwrap();
    db.leases()
        .create(
            "other",
            "old",
            Labels::new(),
            Some(now - Duration::from_secs(1)),
        )
        .unwrap();
    db.leases()
        .add_resource("other", "old", &LeaseResource::Content(leased))
        .unwrap();

    let r = gc::collect(&db, &store, &sweeper).unwrap();
    println!("gc report: {r:#?}");
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let mut blobs = r.blobs.clone();
    blobs.sort();
    let mut want = vec![junk.to_string(), stray.to_string(), leased.to_string()];
    want.sort();
    assert_eq!(blobs, want);
    assert_eq!(r.bytes_freed, 9 + 5 + 26);
    let mut recs = r.content_records.clone();
    recs.sort();
    assert_eq!(
        recs,
        vec![
            ("default".to_string(), shared.to_string()),
            ("default".to_string(), junk.to_string()),
            ("other".to_string(), leased.to_string())
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    assert_eq!(
        r.expired_leases,
        vec![("other".to_string(), "old".to_string())]
    );
    let removed: Vec<&str> = r
        .backend_snapshots
        .iter()
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(
        removed,
        ["g3", "g2", "g1", "orphan"],
        "children first, then orphans"
    );
    assert_eq!(sweeper.keys(), ["b-layer", "b-rw"]);
    for d in [config, layer, manifest, rooted, shared] {
        assert!(store.info(&d).is_ok(), "{d} must be kept");
    }
    assert!(db.content().get("other", &shared).is_ok());
    assert!(db.leases().get("other", "old").is_err());

    // Dropping the roots frees the rest; a second run finds nothing.
    db.containers().delete("default", "c1").unwrap();
    db.images().delete("default", "img").unwrap();
    let r = gc::collect(&db, &store, &sweeper).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.blobs.len(), 3, "{r:?}");
    assert_eq!(sweeper.keys(), Vec::<String>::new());
    let r = gc::collect(&db, &store, &sweeper).unwrap();
    assert!(r.blobs.is_empty() && r.backend_snapshots.is_empty() && r.content_records.is_empty());
}

#[test]
fn gc_keeps_going_past_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let db = Db::open(dir.path()).unwrap();
    let sweeper = DirSweeper {
        root: dir.path().join("snaps"),
    };
    for k in ["a", "b", "c"] {
        sweeper.add(k, None);
        db.snapshots()
            .create(
                "default",
                SnapshotRecord::new("dirs", k, k, None, Labels::new()),
            )
            .unwrap();
    }
    fs::write(dir.path().join("snaps/b/busy"), "").unwrap();
    let blob = put_blob(&store, b"garbage");
    let r = gc::collect(&db, &store, &sweeper).unwrap();
    assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
    assert!(
        r.errors
            .iter()
            .all(|e| e.contains("\"b\"") && e.contains("busy")),
        "{:?}",
        r.errors
    );
    assert_eq!(sweeper.keys(), ["b"]);
    assert_eq!(r.blobs, vec![blob.to_string()]);
    assert_eq!(r.snapshot_records.len(), 3);

    // Without snapshotters, a record's backend cannot be removed: reported, records still go.
    db.snapshots()
        .create(
            "default",
            SnapshotRecord::new("zfs", "z", "z", None, Labels::new()),
        )
        .unwrap();
    let r = gc::collect(&db, &store, &gc::NoSnapshotters).unwrap();
    assert_eq!(r.snapshot_records.len(), 1);
    assert!(
        r.errors[0].contains("snapshotter \"zfs\" is not loaded"),
        "{:?}",
        r.errors
    );
}

#[test]
fn scheduler_collects_on_request_and_on_low_space() {
    let dir = tempfile::tempdir().unwrap();
    let never = gc::Schedule {
        interval: None,
        min_free_bytes: Some(0),
        poll: Duration::from_millis(10),
    };
    assert_eq!(gc::due(&never, dir.path(), std::time::Instant::now()), None);
    let low = gc::Schedule {
        min_free_bytes: Some(u64::MAX),
        ..never.clone()
    };
    assert!(matches!(
        gc::due(&low, dir.path(), std::time::Instant::now()),
        Some(gc::Reason::LowSpace { .. })
    ));
    assert!(gc::free_bytes(dir.path()).unwrap() > 0);
    let every = gc::Schedule {
        interval: Some(Duration::ZERO),
        ..never.clone()
    };
    assert_eq!(
        gc::due(&every, dir.path(), std::time::Instant::now()),
        Some(gc::Reason::Interval)
    );

    let store = std::sync::Arc::new(LocalStore::open(dir.path()).unwrap());
    let db = std::sync::Arc::new(Db::open(dir.path()).unwrap());
    let blob = put_blob(&store, b"collect me");
    let trigger = gc::Trigger::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = rt.spawn(gc::run_scheduler(
        never,
        dir.path().to_path_buf(),
        db,
        store.clone(),
        std::sync::Arc::new(gc::NoSnapshotters),
        trigger.clone(),
        move |reason, res| {
            let _ = tx.send((
                reason.clone(),
                res.as_ref()
                    .map(|r| r.blobs.clone())
                    .map_err(|e| e.to_string()),
            ));
        },
    ));
    trigger.request();
    let (reason, res) = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), rx.recv()).await })
        .expect("scheduler answered within 30 s")
        .unwrap();
    task.abort();
    assert_eq!(reason, gc::Reason::Requested);
    assert_eq!(res.unwrap(), vec![blob.to_string()]);
    assert!(store.info(&blob).is_err());
}

#[test]
fn reconcile_removes_snapshot_records_of_missing_backends_and_their_children() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let sweeper = DirSweeper {
        root: dir.path().join("snaps"),
    };
    sweeper.add("a", None);
    sweeper.add("b", Some("a"));
    sweeper.add("c", None);
    let s = db.snapshots();
    s.create(
        "ns",
        SnapshotRecord::new("dirs", "a", "a", None, Labels::new()),
    )
    .unwrap();
    s.create(
        "ns",
        SnapshotRecord::new("dirs", "b", "b", Some("a".into()), Labels::new()),
    )
    .unwrap();
    s.create(
        "ns",
        SnapshotRecord::new("dirs", "c", "c", None, labels(&[(gc::LABEL_ROOT, "")])),
    )
    .unwrap();
    // A snapshotter the sweeper does not manage is left alone.
    s.create(
        "ns",
        SnapshotRecord::new("zfs", "z", "z", None, labels(&[(gc::LABEL_ROOT, "")])),
    )
    .unwrap();
    fs::remove_dir_all(dir.path().join("snaps/a")).unwrap();
    let removed = db.reconcile_snapshots(&sweeper).unwrap();
    let keys: Vec<&str> = removed.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    let left: Vec<String> = s
        .list("ns", None)
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(left, ["c", "z"]);
    // The child's backend, now unrecorded, goes at the next collection.
    let store = LocalStore::open(dir.path()).unwrap();
    let r = gc::collect(&db, &store, &sweeper).unwrap();
    assert_eq!(
        r.backend_snapshots,
        vec![("dirs".to_string(), "b".to_string())]
    );
    assert_eq!(sweeper.keys(), ["c"]);
}

#[test]
fn collection_waits_for_a_creator_holding_the_resource_guard() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(LocalStore::open(dir.path()).unwrap());
    let db = std::sync::Arc::new(Db::open(dir.path()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let creator = {
        let (db, store) = (db.clone(), store.clone());
        std::thread::spawn(move || {
            let _guard = db.resource_guard();
            let d = put_blob(&store, b"fresh blob, record not yet committed");
            tx.send(d).unwrap();
            // The collector runs now, between blob and record.
            std::thread::sleep(Duration::from_millis(300));
            db.content()
                .put_record("default", d, 36, labels(&[(gc::LABEL_ROOT, "")]))
                .unwrap();
            d
        })
    };
    let d = rx.recv().unwrap();
    let t = std::time::Instant::now();
    let r = gc::collect(&db, store.as_ref(), &gc::NoSnapshotters).unwrap();
    println!("collection waited {:?} for the creator", t.elapsed());
    assert_eq!(creator.join().unwrap(), d);
    assert!(r.blobs.is_empty(), "{r:?}");
    assert!(store.info(&d).is_ok());
    assert!(db.content().get("default", &d).is_ok());
}
