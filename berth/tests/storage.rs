//! The storage services through a real berthd and berthctl on a temporary root: every
//! namespaces/content/images/leases/gc verb, the error codes and exit status, persistence
//! across a restart with reconcile, and refusal of a newer metadata schema.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
const BERTHCTL: &str = env!("CARGO_BIN_EXE_berthctl");

/// A berthd child killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path) -> PathBuf {
    let cfg = dir.join("berthd.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[ttrpc]\naddress = \"{0}/state/berthd.sock\"\n\
             [plugins.\"berth.gc.v1.scheduler\"]\ninterval_secs = 0\n",
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

fn start(dir: &Path) -> Daemon {
    let started = Instant::now();
    let child = Command::new(BERTHD)
        .arg("--config")
        .arg(config(dir))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        socket: dir.join("state/berthd.sock"),
    };
    while started.elapsed() < Duration::from_secs(20) {
        if ctl(&d, &["version"]).status.success() {
            println!("berthd answered after {:?}", started.elapsed());
            return d;
        }
        if let Some(status) = d.child.try_wait().unwrap() {
            panic!("berthd exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("berthd did not answer within 20 s");
}

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    Command::new(BERTHCTL)
        .arg("--address")
        .arg(&d.socket)
        .args(args)
        .env_remove("BERTH_NAMESPACE")
        .output()
        .unwrap()
}

/// Runs a verb that must succeed; returns stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let out = ctl(d, args);
    assert!(
        out.status.success(),
        "berthctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a verb that must fail with exit code 1 and one stderr line holding `code`; returns it.
fn fails(d: &Daemon, args: &[&str], code: &str) -> String {
    let out = ctl(d, args);
    assert_eq!(out.status.code(), Some(1), "berthctl {args:?} must fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("berthctl: error: "), "{err}");
    assert!(err.contains(&format!(": {code}: ")), "want {code}: {err}");
    err
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn put(d: &Daemon, dir: &Path, ns: &str, name: &str, data: &[u8], labels: &[&str]) -> String {
    let f = dir.join(name);
    std::fs::write(&f, data).unwrap();
    let mut args = vec!["-n", ns, "content", "put", f.to_str().unwrap()];
    for l in labels {
        args.extend(["-l", l]);
    }
    ok(d, &args).trim().to_string()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn storage_plugins_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let out = ok(&d, &["plugins", "ls", "-q"]);
    for id in [
        "berth.service.v1.namespaces",
        "berth.service.v1.images",
        "berth.service.v1.leases",
        "berth.service.v1.content",
        "berth.service.v1.gc",
        "berth.metadata.v1.redb",
        "berth.content.v1.content",
        "berth.gc.v1.scheduler",
    ] {
        assert!(out.lines().any(|l| l == id), "{id} missing:\n{out}");
    }
    assert!(dir.path().join("root/metadata.redb").is_file());
}

#[test]
fn namespaces_verbs_and_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    assert_eq!(
        ok(&d, &["namespaces", "create", "team-a", "-l", "owner=ci"]),
        "team-a\n"
    );
    let table = ok(&d, &["namespaces", "ls"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("team-a") && table.contains("owner=ci"),
        "{table}"
    );
    let v = json(&ok(&d, &["ns", "ls", "--format", "json"]));
    assert_eq!(v[0]["name"], "team-a");
    assert_eq!(v[0]["labels"]["owner"], "ci");
    assert_eq!(ok(&d, &["namespaces", "ls", "-q"]), "team-a\n");

    fails(&d, &["namespaces", "create", "team-a"], "ALREADY_EXISTS");
    let e = fails(
        &d,
        &["namespaces", "create", "bad/name"],
        "INVALID_ARGUMENT",
    );
    assert!(e.contains("namespace name \"bad/name\" is invalid"), "{e}");
    fails(&d, &["namespaces", "rm", "nope"], "NOT_FOUND");
    // The namespace flag is validated too.
    fails(&d, &["-n", "a..b", "content", "ls"], "INVALID_ARGUMENT");

    put(&d, dir.path(), "team-a", "blob", b"data", &[]);
    let e = fails(&d, &["namespaces", "rm", "team-a"], "FAILED_PRECONDITION");
    assert!(e.contains("still holds content"), "{e}");
    let digest = ok(&d, &["-n", "team-a", "content", "ls", "-q"]);
    ok(&d, &["-n", "team-a", "content", "rm", digest.trim()]);
    assert_eq!(ok(&d, &["namespaces", "rm", "team-a"]), "team-a\n");
    assert_eq!(ok(&d, &["namespaces", "ls", "-q"]), "");
}

#[test]
fn content_verbs_namespaces_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    // 2.5 MiB: several 1 MiB Write and Read messages.
    let data: Vec<u8> = (0..(5u32 << 19)).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    let digest = put(&d, dir.path(), "default", "big", &data, &["kind=test"]);
    println!("put of {} bytes took {:?}", data.len(), t.elapsed());
    assert_eq!(digest, format!("sha256:{}", sha256_hex(&data)));
    let blob = dir
        .path()
        .join("root/content/blobs/sha256")
        .join(&digest[7..]);
    assert!(blob.is_file());

    let table = ok(&d, &["content", "ls"]);
    assert!(
        table.starts_with("DIGEST") && table.contains(&digest) && table.contains("2.5 MiB"),
        "{table}"
    );
    assert!(table.contains("kind=test"), "{table}");
    let v = json(&ok(&d, &["content", "ls", "--format", "json"]));
    assert_eq!(v[0]["size"], data.len() as u64);
    assert_eq!(ok(&d, &["content", "ls", "-q"]), format!("{digest}\n"));

    let out = dir.path().join("out");
    ok(
        &d,
        &["content", "get", &digest, "-o", out.to_str().unwrap()],
    );
    assert!(std::fs::read(&out).unwrap() == data, "read back differs");
    let stdout = ctl(&d, &["content", "get", &digest]).stdout;
    assert!(stdout == data, "stdout read back differs");

    // Another namespace cannot see it until it records it itself.
    fails(&d, &["-n", "other", "content", "get", &digest], "NOT_FOUND");
    assert_eq!(ok(&d, &["-n", "other", "content", "ls", "-q"]), "");
    // Content no image or lease refers to is garbage unless labelled as a root.
    assert_eq!(
        put(
            &d,
            dir.path(),
            "other",
            "big2",
            &data,
            &["containerd.io/gc.root=1"]
        ),
        digest
    );
    fails(&d, &["content", "get", "sha256:abc"], "INVALID_ARGUMENT");
    fails(
        &d,
        &["content", "rm", &format!("sha256:{}", "0".repeat(64))],
        "NOT_FOUND",
    );

    // Removing one namespace's record keeps the blob for the other.
    ok(&d, &["content", "rm", &digest]);
    let v = json(&ok(&d, &["gc", "--format", "json"]));
    assert_eq!(v["blobs"].as_array().unwrap().len(), 0, "{v}");
    assert!(blob.is_file());
    assert_eq!(
        ok(&d, &["-n", "other", "content", "ls", "-q"]),
        format!("{digest}\n")
    );
    // Removing the last record frees it (rm requests a background collection; the explicit
    // one makes sure it has run).
    ok(&d, &["-n", "other", "content", "rm", &digest]);
    let out = ok(&d, &["gc"]);
    assert!(out.contains("removed ") && out.contains(" freed)"), "{out}");
    assert!(!blob.exists());
}

#[test]
fn images_verbs_and_delete_frees_content() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let layer = put(&d, dir.path(), "default", "layer", b"layer bytes", &[]);
    let manifest_bytes = format!("{{\"layers\":[\"{layer}\"]}}");
    let manifest = put(
        &d,
        dir.path(),
        "default",
        "manifest",
        manifest_bytes.as_bytes(),
        &[&format!("containerd.io/gc.ref.content.l.0={layer}")],
    );
    let stray = put(&d, dir.path(), "default", "stray", b"unreferenced", &[]);

    let rt = rt();
    let client = rt
        .block_on(berth_api::client::StorageClient::connect(
            d.socket.to_str().unwrap(),
            Duration::from_secs(10),
            "default",
        ))
        .unwrap();
    let image = |name: &str| berth_api::proto::images::Image {
        name: name.into(),
        target: Some(berth_api::proto::images::Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: manifest.clone(),
            size: manifest_bytes.len() as i64,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    rt.block_on(client.create_image(image("docker.io/library/app:1")))
        .unwrap();
    rt.block_on(client.create_image(image("docker.io/library/app:2")))
        .unwrap();
    let e = rt
        .block_on(client.create_image(image("docker.io/library/app:1")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ALREADY_EXISTS"), "{e}");

    // A labels-only update may omit the target.
    let upd = rt
        .block_on(
            client.update_image(
                berth_api::proto::images::Image {
                    name: "docker.io/library/app:2".into(),
                    labels: [("env".to_string(), "ci".to_string())]
                        .into_iter()
                        .collect(),
                    ..Default::default()
                },
                vec!["labels.env".into()],
            ),
        )
        .unwrap();
    assert_eq!(upd.labels["env"], "ci");
    assert_eq!(upd.target.digest, manifest);

    let table = ok(&d, &["images", "ls"]);
    assert!(
        table.starts_with("REF")
            && table.contains("docker.io/library/app:1")
            && table.contains(&manifest),
        "{table}"
    );
    assert_eq!(
        ok(&d, &["images", "ls", "-q"]),
        "docker.io/library/app:1\ndocker.io/library/app:2\n"
    );
    let v = json(&ok(&d, &["images", "ls", "--format", "json"]));
    assert_eq!(v[1]["target"]["digest"], manifest.as_str());

    // The images keep manifest and layer; the stray blob goes.
    let out = ok(&d, &["gc"]);
    assert!(out.starts_with("REMOVED"), "{out}");
    assert!(out.contains(&format!("blob            {stray}")), "{out}");
    assert!(
        out.contains(&format!("content record  default/{stray}")),
        "{out}"
    );
    assert!(
        out.contains(
            "removed 1 blobs (12 B freed), 1 content records, 0 snapshots, 0 expired leases"
        ),
        "{out}"
    );
    assert_eq!(
        ok(&d, &["images", "rm", "docker.io/library/app:1"]),
        "docker.io/library/app:1\n"
    );
    let e = fails(
        &d,
        &["images", "rm", "docker.io/library/app:1"],
        "NOT_FOUND",
    );
    assert!(
        e.contains("image \"docker.io/library/app:1\" in namespace \"default\" not found"),
        "{e}"
    );
    fails(
        &d,
        &["-n", "other", "images", "rm", "docker.io/library/app:2"],
        "NOT_FOUND",
    );
    // The last image goes with --sync: its manifest and layer are gone when rm returns.
    ok(&d, &["images", "rm", "--sync", "docker.io/library/app:2"]);
    assert_eq!(ok(&d, &["content", "ls", "-q"]), "");
    let blobs = std::fs::read_dir(dir.path().join("root/content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
}

#[test]
fn leases_verbs_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    assert_eq!(
        ok(&d, &["leases", "create", "pull-1", "-l", "why=test"]),
        "pull-1\n"
    );
    assert_eq!(
        ok(&d, &["leases", "create", "short", "--expires-in", "1s"]),
        "short\n"
    );
    fails(&d, &["leases", "create", "pull-1"], "ALREADY_EXISTS");
    let u = ctl(&d, &["leases", "create", "x", "--expires-in", "3w"]);
    assert_eq!(u.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&u.stderr).contains("unknown unit"));

    // Content written under a lease survives collection while the lease lives.
    let rt = rt();
    let client = rt
        .block_on(berth_api::client::StorageClient::connect(
            d.socket.to_str().unwrap(),
            Duration::from_secs(10),
            "default",
        ))
        .unwrap()
        .with_lease(Some("pull-1".into()));
    let digest = rt
        .block_on(client.write_content("layer-x", &mut &b"leased bytes"[..], vec![]))
        .unwrap();
    let table = ok(&d, &["leases", "ls"]);
    assert!(
        table.starts_with("ID") && table.contains("pull-1") && table.contains("why=test"),
        "{table}"
    );
    let v = json(&ok(&d, &["leases", "ls", "--format", "json"]));
    assert_eq!(v[0]["id"], "pull-1");
    assert_eq!(
        v[0]["resources"],
        serde_json::json!([format!("content:{digest}")])
    );
    assert!(v[1]["expires_at"].as_i64().unwrap() > 0);

    std::thread::sleep(Duration::from_millis(1100));
    let v = json(&ok(&d, &["gc", "--format", "json"]));
    assert_eq!(
        v["expired_leases"],
        serde_json::json!(["default/short"]),
        "{v}"
    );
    assert_eq!(v["blobs"], serde_json::json!([]), "{v}");
    assert_eq!(ok(&d, &["leases", "ls", "-q"]), "pull-1\n");

    fails(&d, &["leases", "rm", "nope"], "NOT_FOUND");
    assert_eq!(ok(&d, &["leases", "rm", "--sync", "pull-1"]), "pull-1\n");
    assert_eq!(ok(&d, &["content", "ls", "-q"]), "");
}

#[test]
fn restart_keeps_records_and_reconciles_missing_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let kept = put(&d, dir.path(), "default", "a", b"kept", &[]);
    let lost = put(&d, dir.path(), "default", "b", b"lost", &[]);
    ok(&d, &["namespaces", "create", "empty"]);
    drop(d);
    let blob = dir
        .path()
        .join("root/content/blobs/sha256")
        .join(&lost[7..]);
    std::fs::remove_file(&blob).unwrap();
    let d = start(dir.path());
    assert_eq!(ok(&d, &["content", "ls", "-q"]), format!("{kept}\n"));
    assert_eq!(ok(&d, &["namespaces", "ls", "-q"]), "default\nempty\n");
}

#[test]
fn newer_schema_stops_berthd_with_one_clear_line_or_rolls_back_to_the_saved_copy() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let kept_blob = put(&d, dir.path(), "default", "a", b"before the upgrade", &[]);
    drop(d);
    let path = dir.path().join("root/metadata.redb");
    let saved = dir.path().join("root/metadata.redb.schema-2");
    // What a newer berthd saves before migrating (tested for real in metadata::tests).
    std::fs::copy(&path, &saved).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
        txn.open_table(meta)
            .unwrap()
            .insert("schema_version", 7)
            .unwrap();
        txn.open_table(meta)
            .unwrap()
            .insert("write_compat", 7)
            .unwrap();
        txn.commit().unwrap();
    }
    // Without the saved copy: refused, one line.
    std::fs::rename(&saved, dir.path().join("saved")).unwrap();
    let out = Command::new(BERTHD)
        .arg("--config")
        .arg(config(dir.path()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(berth_daemon::EXIT_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("berthd: error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains(&path.display().to_string()), "{line}");
    assert!(
        line.contains("schema version 7 is newer than this berthd supports (version 2)"),
        "{line}"
    );
    assert!(line.contains(&saved.display().to_string()), "{line}");
    assert!(
        !dir.path().join("state/berthd.sock").exists(),
        "socket left behind"
    );

    // With it (an A/B rollback after an upgrade that migrated): berthd starts on the copy,
    // keeps the newer file, and its collector deletes nothing on disk.
    std::fs::rename(dir.path().join("saved"), &saved).unwrap();
    // A blob only the newer berthd recorded (e.g. a layer it pulled).
    let newer_data = b"pulled by the newer berthd";
    let newer_only = dir
        .path()
        .join("root/content/blobs/sha256")
        .join(sha256_hex(newer_data));
    std::fs::write(&newer_only, newer_data).unwrap();
    let d = start(dir.path());
    assert_eq!(ok(&d, &["content", "ls", "-q"]), format!("{kept_blob}\n"));
    assert!(dir.path().join("root/metadata.redb.schema-7").exists());
    let gc = ok(&d, &["gc"]);
    println!("berthctl gc during the rollback:\n{gc}");
    assert!(
        gc.contains("blob and snapshot sweep suspended: ")
            && gc.contains("metadata.redb.schema-7 kept from a newer berthd after a rollback"),
        "{gc}"
    );
    assert!(newer_only.exists(), "the newer berthd's blob was collected");
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn content_write_resumes_verifies_and_aborts() {
    use berth_api::proto::content::{WriteAction, WriteContentRequest};
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let rt = rt();
    let client = rt
        .block_on(berth_api::client::StorageClient::connect(
            d.socket.to_str().unwrap(),
            Duration::from_secs(10),
            "default",
        ))
        .unwrap();
    let data = b"0123456789abcdef";
    let digest = format!("sha256:{}", sha256_hex(data));
    let msg = |action: WriteAction, offset: i64, bytes: &[u8]| WriteContentRequest {
        action: action.into(),
        ref_: "resumable".into(),
        total: data.len() as i64,
        expected: digest.clone(),
        offset,
        data: bytes.to_vec(),
        ..Default::default()
    };
    // First connection writes half and goes away.
    let r = rt
        .block_on(client.write_messages(vec![msg(WriteAction::WRITE, 0, &data[..8])]))
        .unwrap();
    assert_eq!(r[0].offset, 8);
    let st = rt.block_on(client.content_status("resumable")).unwrap();
    assert_eq!(
        (st.offset, st.total, st.expected.as_str()),
        (8, 16, digest.as_str())
    );
    assert_eq!(rt.block_on(client.content_statuses()).unwrap().len(), 1);
    // A write that skips ahead is refused with INVALID_ARGUMENT.
    let e = rt
        .block_on(client.write_messages(vec![msg(WriteAction::WRITE, 12, &data[12..])]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("INVALID_ARGUMENT") && e.contains("offset 12"),
        "{e}"
    );
    // Resume: STAT tells where to continue, then commit.
    let r = rt
        .block_on(client.write_messages(vec![
            msg(WriteAction::STAT, 0, &[]),
            msg(WriteAction::COMMIT, 8, &data[8..]),
        ]))
        .unwrap();
    assert_eq!(r[0].offset, 8);
    assert_eq!(r[1].digest, digest);
    assert_eq!(ok(&d, &["content", "ls", "-q"]), format!("{digest}\n"));
    let e = rt
        .block_on(client.content_status("resumable"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOT_FOUND"), "{e}");

    // A commit whose bytes do not match the expected digest publishes nothing.
    let wrong = format!("sha256:{}", "1".repeat(64));
    let bad = WriteContentRequest {
        action: WriteAction::COMMIT.into(),
        ref_: "wrong".into(),
        total: 3,
        expected: wrong,
        data: b"abc".to_vec(),
        ..Default::default()
    };
    let e = rt
        .block_on(client.write_messages(vec![bad]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("INVALID_ARGUMENT") && e.contains("digest mismatch"),
        "{e}"
    );
    // Oversized chunks are refused before touching the store.
    let big = WriteContentRequest {
        action: WriteAction::WRITE.into(),
        ref_: "big".into(),
        data: vec![0u8; (1 << 20) + 1],
        ..Default::default()
    };
    let e = rt
        .block_on(client.write_messages(vec![big]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("INVALID_ARGUMENT") && e.contains("at most 1048576"),
        "{e}"
    );
    // The failed ingest is kept for a retry, until aborted.
    rt.block_on(client.abort_content("wrong")).unwrap();
    let e = rt
        .block_on(client.abort_content("wrong"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NOT_FOUND"), "{e}");
    assert!(rt.block_on(client.content_statuses()).unwrap().is_empty());
    // Writing the same blob again into the same namespace is ALREADY_EXISTS, as containerd.
    let e = rt
        .block_on(client.write_content("again", &mut &data[..], vec![]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("ALREADY_EXISTS"), "{e}");
}
