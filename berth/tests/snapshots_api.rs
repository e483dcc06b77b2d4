//! The Snapshots service through berthd and `berthctl snapshots`: plugins, namespaces,
//! tables, JSON, tree, usage, removal order and precise error codes.

use berth_test_support::support;
use support::{berthctl as ctl, start_berthd as start, Berthd as Daemon};

/// Runs `berthctl snapshots <args>` and returns stdout; panics with stderr on failure.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["snapshots"];
    all.extend_from_slice(args);
    let out = ctl(&d.socket, &all);
    assert!(
        out.status.success(),
        "berthctl {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `berthctl snapshots <args>`, expects exit 1, returns stderr.
fn fails(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["snapshots"];
    all.extend_from_slice(args);
    let out = ctl(&d.socket, &all);
    assert_eq!(out.status.code(), Some(1), "berthctl {all:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn snapshots_through_berthd_and_berthctl() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let root = nix::unistd::geteuid().is_root();

    let out = ctl(
        &d.socket,
        &[
            "plugins",
            "ls",
            "--format",
            "json",
            "-f",
            "type==io.containerd.snapshotter.v1",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_id = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_id("native")["status"], "ok", "{v}");
    let overlay = by_id("overlayfs");
    if root && berth_engine::snapshots::overlay::unsupported_reason().is_none() {
        assert_eq!(overlay["status"], "ok", "{v}");
    } else {
        assert_eq!(overlay["status"], "skipped", "{v}");
        assert!(!overlay["reason"].as_str().unwrap().is_empty(), "{v}");
    }
    assert!(dir
        .path()
        .join("root/io.containerd.snapshotter.v1.native/metadata.redb")
        .exists());

    // A chain base <- child, and a view.
    let m = ok(&d, &["prepare", "base-tmp"]);
    assert!(m.starts_with("bind ") && m.contains("rw"), "{m}");
    ok(&d, &["commit", "base", "base-tmp"]);
    let m = ok(&d, &["prepare", "child", "base"]);
    assert!(!m.is_empty(), "{m}");
    ok(&d, &["view", "look", "base"]);

    let table = ok(&d, &["ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["KEY", "PARENT", "KIND"]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["base", "committed"]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["child", "base", "active"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["look", "base", "view"]
    );
    assert_eq!(ok(&d, &["ls", "-q"]), "base\nchild\nlook\n");
    assert_eq!(ok(&d, &["ls", "-q", "-f", "kind==active"]), "child\n");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["ls", "--format", "json"])).unwrap();
    assert_eq!(json[1]["key"], "child");
    assert_eq!(json[1]["parent"], "base");
    assert_eq!(json[1]["kind"], "active");
    assert_eq!(ok(&d, &["tree"]), "base\n  \\_ child\n  \\_ look\n");

    let usage: serde_json::Value =
        serde_json::from_str(&ok(&d, &["usage", "--format", "json", "base"])).unwrap();
    assert_eq!(usage[0]["key"], "base");
    assert!(usage[0]["inodes"].as_i64().unwrap() >= 1, "{usage}");
    let t = ok(&d, &["usage"]);
    assert!(
        t.starts_with("KEY") && t.contains("INODES") && t.lines().count() == 4,
        "{t}"
    );

    // Precise codes, keys shown without the namespace prefix.
    let e = fails(&d, &["rm", "base"]);
    assert!(
        e.contains("FAILED_PRECONDITION") && e.contains("\"base\"") && !e.contains("default/"),
        "{e}"
    );
    let e = fails(&d, &["prepare", "child", "base"]);
    assert!(
        e.contains("ALREADY_EXISTS") && e.contains("\"child\""),
        "{e}"
    );
    let e = fails(&d, &["commit", "x", "missing"]);
    assert!(e.contains("NOT_FOUND") && e.contains("\"missing\""), "{e}");
    let e = fails(&d, &["ls", "-f", "kind=active"]);
    assert!(e.contains("INVALID_ARGUMENT"), "{e}");
    let e = fails(&d, &["-s", "zfs", "ls"]);
    assert!(
        e.contains("INVALID_ARGUMENT") && e.contains("zfs") && e.contains("native"),
        "{e}"
    );
    let e = fails(&d, &["-n", "bad/ns", "ls"]);
    assert!(
        e.contains("INVALID_ARGUMENT") && e.contains("bad/ns"),
        "{e}"
    );

    // Namespaces are separate: the same key elsewhere, invisible here.
    assert_eq!(ok(&d, &["-n", "other", "ls", "-q"]), "");
    ok(&d, &["-n", "other", "prepare", "child"]);
    assert_eq!(ok(&d, &["-n", "other", "ls", "-q"]), "child\n");
    let e = fails(&d, &["-n", "other", "prepare", "x", "base"]);
    assert!(e.contains("NOT_FOUND"), "{e}");

    // rm tries every key and reports the failure; then top-down removal works.
    let e = fails(&d, &["rm", "base", "look"]);
    assert!(e.contains("FAILED_PRECONDITION"), "{e}");
    assert_eq!(ok(&d, &["ls", "-q"]), "base\nchild\n");
    ok(&d, &["rm", "child", "base"]);
    assert_eq!(ok(&d, &["ls", "-q"]), "");
    ok(&d, &["-s", "native", "prepare", "n1"]);
    assert_eq!(ok(&d, &["-s", "native", "ls", "-q"]), "n1\n");
}
