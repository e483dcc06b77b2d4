//! Node configuration on a temporary directory, with shell scripts standing in for the
//! validating helpers (they record their arguments and refuse what contains "bad").

use super::*;
use std::os::unix::fs::PermissionsExt;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";

/// A helper script: exits 78 with a message when any argument's file contains "bad", and
/// appends its arguments to `<dir>/<name>.args`.
fn helper(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let log = dir.join(format!("{name}.args"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$@\" >> {log}\nfor a in \"$@\"; do f=${{a#*=}}; \
             if [ -e \"$f\" ] && grep -rq bad \"$f\"; then echo \"$f: refused by {name}\" >&2; exit 78; fi; done\nexit 0\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn env(dir: &Path) -> Env {
    Env {
        dir: dir.join("etc"),
        berthd: helper(dir, "berthd"),
        apid: helper(dir, "apid"),
        scratch: dir.join("scratch"),
    }
}

fn put1(env: &Env, rel: &str, data: &str) -> Result<(Vec<String>, Vec<String>), NodeConfigError> {
    put(env, vec![(rel.into(), data.as_bytes().to_vec())], vec![])
}

#[test]
fn only_managed_paths_can_be_named() {
    for ok in [
        "node.toml",
        "berthd.d/10-debug.toml",
        "certs.d/_default/hosts.toml",
        "certs.d/10.0.2.2:5000/ca.crt",
        "remote/node.key",
    ] {
        Kind::of(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for bad in [
        "/etc/shadow",
        "../node.toml",
        "remote/../../x",
        "berthd.d/x.conf",
        "other.toml",
        "remote/.hidden",
        "certs.d/a/b/c",
        "",
    ] {
        assert!(Kind::of(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_node_file_is_checked_by_inits_parser_and_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let err = put1(&env, "node.toml", "[time]\nwait_secs = \"x\"\n").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("node.toml: line 2: key time.wait_secs:"),
        "{err}"
    );
    assert!(!env.dir.join("node.toml").exists());
    let (written, _) = put1(&env, "node.toml", "[time]\nwait_secs = 1\n").unwrap();
    assert_eq!(written, ["node.toml"]);
    assert_eq!(
        std::fs::read_to_string(env.dir.join("node.toml")).unwrap(),
        "[time]\nwait_secs = 1\n"
    );
    // No helper was needed.
    assert!(!dir.path().join("berthd.args").exists());
}

#[test]
fn drop_ins_and_hosts_go_through_berthd_and_nothing_is_written_when_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let files = vec![
        (
            "berthd.d/10-a.toml".to_string(),
            b"[debug]\nlevel = \"debug\"\n".to_vec(),
        ),
        (
            "certs.d/_default/hosts.toml".to_string(),
            b"server = \"http://bad\"\n".to_vec(),
        ),
    ];
    let err = put(&env, files.clone(), vec![]).unwrap_err();
    assert!(err.to_string().contains("refused by berthd"), "{err}");
    assert!(!env.dir.join("berthd.d/10-a.toml").exists());
    let args = std::fs::read_to_string(dir.path().join("berthd.args")).unwrap();
    assert!(args.contains("--check-config --override"), "{args}");
    assert!(args.contains("--check-hosts"), "{args}");
    let mut good = files;
    good[1].1 = b"server = \"http://10.0.2.2:5000\"\n".to_vec();
    put(&env, good, vec![]).unwrap();
    assert!(env.dir.join("certs.d/_default/hosts.toml").is_file());
    // Syntax errors are caught before any helper, with the line.
    let err = put1(&env, "berthd.d/20-b.toml", "x = \n").unwrap_err();
    assert!(err.to_string().contains("line 1: invalid TOML"), "{err}");
    // Removal is checked by berthd too (the drop-in as absent).
    put(&env, vec![], vec!["berthd.d/10-a.toml".into()]).unwrap();
    assert!(!env.dir.join("berthd.d/10-a.toml").exists());
    let args = std::fs::read_to_string(dir.path().join("berthd.args")).unwrap();
    assert!(args.trim_end().ends_with("10-a.toml="), "{args}");
}

#[test]
fn credentials_are_checked_together_written_0600_and_never_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    // Only the CA: shape only, no listener check yet.
    put1(&env, "remote/ca.pem", CERT).unwrap();
    assert!(!dir.path().join("apid.args").exists());
    let err = put1(&env, "remote/node.key", CERT).unwrap_err();
    assert!(
        err.to_string().contains("must hold a PEM private key"),
        "{err}"
    );
    let err = put1(&env, "remote/node.pem", KEY).unwrap_err();
    assert!(err.to_string().contains("ending in .key"), "{err}");
    put(
        &env,
        vec![
            ("remote/node.pem".into(), CERT.as_bytes().to_vec()),
            ("remote/node.key".into(), KEY.as_bytes().to_vec()),
        ],
        vec![],
    )
    .unwrap();
    let args = std::fs::read_to_string(dir.path().join("apid.args")).unwrap();
    assert!(args.starts_with("--check --ca "), "{args}");
    let mode = std::fs::metadata(env.dir.join("remote/node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(matches!(
        get(&env, "remote/node.key"),
        Err(NodeConfigError::KeyFile(_))
    ));
    assert_eq!(get(&env, "remote/ca.pem").unwrap().0, CERT.as_bytes());
    let listed: Vec<String> = list(&env).unwrap().into_iter().map(|i| i.path).collect();
    assert_eq!(
        listed,
        ["remote/ca.pem", "remote/node.key", "remote/node.pem"]
    );
    // The scratch copies are gone.
    assert_eq!(std::fs::read_dir(&env.scratch).unwrap().count(), 0);
}

#[test]
fn inline_keys_are_redacted_on_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let env = env(dir.path());
    let node = format!("[remote]\nkey = \"\"\"{KEY}\"\"\"\nport = 7443\n");
    put1(&env, "node.toml", &node).unwrap();
    let (text, redacted) = get(&env, "node.toml").unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(redacted);
    assert!(!text.contains("c2VjcmV0"), "{text}");
    assert!(text.contains("<private key redacted>") && text.contains("port = 7443"));
    assert!(matches!(
        get(&env, "berthd.d/none.toml"),
        Err(NodeConfigError::NotFound(_))
    ));
}
