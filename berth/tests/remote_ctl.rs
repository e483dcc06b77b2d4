//! berthctl over the remote API on the host: `berthctl pki` makes the fleet, the real
//! `berth-apid` applet listens on loopback in front of a real berthd, and berthctl talks to it
//! with `--remote`, a context and `--nodes`: the same output as through the local socket, roles
//! enforced, the node's identity checked, refusals worded as refusals, fan-out prefixes and exit
//! status. (Init's half — System calls — is in the QEMU scenarios: init is PID 1.)

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use berth_test_support::support;

const BERTH: &str = env!("CARGO_BIN_EXE_berth");
const BERTHCTL: &str = env!("CARGO_BIN_EXE_berthctl");

/// The listener process, stopped on drop.
struct Apid(Child);

impl Drop for Apid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// berthctl with `args`, no environment that could redirect it.
fn ctl(config: &Path, args: &[&str]) -> Output {
    Command::new(BERTHCTL)
        .args(args)
        .env("BERTHCONFIG", config)
        .env_remove("BERTH_ADDRESS")
        .env_remove("BERTH_REMOTE")
        .env_remove("BERTH_CONTEXT")
        .env_remove("BERTH_NAMESPACE")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ok(config: &Path, args: &[&str]) -> String {
    let o = ctl(config, args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "berthctl {args:?}: {err}");
    out
}

/// The fleet in `dir` made by `berthctl pki`: ca, node-a (127.0.0.1), ada (admin), rita
/// (reader).
fn make_fleet(dir: &Path, config: &Path) {
    let d = dir.display().to_string();
    ok(config, &["pki", "ca", "--name", "test fleet", "--out", &d]);
    ok(
        config,
        &[
            "pki",
            "node",
            "--ca-dir",
            &d,
            "--out",
            &d,
            "--name",
            "node-a",
            "--dns",
            "node-a",
            "--ip",
            "127.0.0.1",
        ],
    );
    for (name, role) in [("ada", "admin"), ("rita", "reader")] {
        ok(
            config,
            &[
                "pki", "client", "--ca-dir", &d, "--out", &d, "--name", name, "--role", role,
            ],
        );
    }
}

fn start_apid(dir: &Path, berthd: &Path, port: u16) -> Apid {
    let cfg = dir.join("apid.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:{port}\"\nca = \"{0}/ca.pem\"\ncert = \"{0}/node-a.pem\"\nkey = \"{0}/node-a.key\"\nberthd = \"{1}\"\ninit = \"{0}/no-init.sock\"\n",
            dir.display(),
            berthd.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("apid.log")).unwrap();
    let child = Command::new(BERTH)
        .args(["berth-apid", "--config"])
        .arg(&cfg)
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "berth-apid did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Apid(child)
}

fn creds(dir: &Path, who: &str) -> Vec<String> {
    let d = dir.display();
    vec![
        "--ca".into(),
        format!("{d}/ca.pem"),
        "--cert".into(),
        format!("{d}/{who}.pem"),
        "--key".into(),
        format!("{d}/{who}.key"),
    ]
}

fn with(base: &[String], more: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn berthctl_over_the_remote_api_matches_local_and_enforces_identity_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("contexts.toml");
    let pki: PathBuf = dir.path().join("pki");
    make_fleet(&pki, &config);
    let d = support::start_berthd(dir.path());
    let port = free_port();
    let _apid = start_apid(&pki, &d.socket, port);
    let sock = d.socket.display().to_string();
    let node = format!("node-a=127.0.0.1:{port}");
    let admin = with(&creds(&pki, "ada"), &["--remote", &node]);
    let reader = with(&creds(&pki, "rita"), &["--remote", &node]);

    // The same output as through the local socket.
    ok(
        &config,
        &["--address", &sock, "namespaces", "create", "remote-test"],
    );
    for verb in [
        &["version"][..],
        &["namespaces", "ls"],
        &["plugins", "ls"],
        &["images", "ls"],
    ] {
        let local = ok(
            &config,
            &with(&["--address".into(), sock.clone()], verb)
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let remote = ok(&config, &strs(&with(&admin, verb)));
        assert_eq!(local, remote, "{verb:?}");
    }
    // The reader reads, and is refused a change with PERMISSION_DENIED naming role and method.
    ok(&config, &strs(&with(&reader, &["namespaces", "ls"])));
    let o = ctl(
        &config,
        &strs(&with(&reader, &["namespaces", "create", "x"])),
    );
    let (_, err) = text(&o);
    println!("reader's create: {err}");
    assert!(!o.status.success());
    assert!(
        err.contains("PERMISSION_DENIED: role reader may not call /berth.services.namespaces.v1.Namespaces/Create"),
        "{err}"
    );
    // Server identity: node-a's certificate where node-b was meant.
    let wrong = with(
        &creds(&pki, "ada"),
        &["--remote", &format!("node-b=127.0.0.1:{port}"), "version"],
    );
    let (_, err) = text(&ctl(&config, &strs(&wrong)));
    println!("node-b meant: {err}");
    assert!(
        err.contains("certificate not valid for name \"node-b\""),
        "{err}"
    );
    // A client certificate the node refuses after the TLS 1.3 handshake: worded as a refusal.
    let other = dir.path().join("other");
    ok(
        &config,
        &["pki", "ca", "--out", &other.display().to_string()],
    );
    ok(
        &config,
        &[
            "pki",
            "client",
            "--ca-dir",
            &other.display().to_string(),
            "--out",
            &other.display().to_string(),
            "--name",
            "eve",
            "--role",
            "admin",
        ],
    );
    let eve = vec![
        "--ca".to_string(),
        format!("{}/ca.pem", pki.display()),
        "--cert".into(),
        format!("{}/eve.pem", other.display()),
        "--key".into(),
        format!("{}/eve.key", other.display()),
        "--remote".into(),
        node.clone(),
        "version".into(),
    ];
    let o = ctl(&config, &strs(&eve));
    let (_, err) = text(&o);
    println!("other CA: {err}");
    assert!(!o.status.success());
    assert!(
        err.contains("refused this client's certificate (TLS alert UnknownCA"),
        "{err}"
    );

    // Contexts: add one with a node that is down, use it, fan out.
    let dead = free_port();
    let nodes = format!("node-a=127.0.0.1:{port},node-x=127.0.0.1:{dead}");
    ok(
        &config,
        &strs(&with(
            &creds(&pki, "ada"),
            &["config", "add-context", "lab", "--node", &nodes],
        )),
    );
    ok(&config, &["config", "use-context", "lab"]);
    let listed = ok(&config, &["config", "contexts"]);
    assert!(listed.contains("*") && listed.contains("lab"), "{listed}");
    // The current context applies without flags; an explicit --address still goes local.
    assert!(ok(&config, &["namespaces", "ls"]).contains("remote-test"));
    assert!(ok(&config, &["--address", &sock, "namespaces", "ls"]).contains("remote-test"));
    let o = ctl(&config, &["--context", "lab", "--nodes", "*", "version"]);
    let (out, err) = text(&o);
    println!("fan-out stdout:\n{out}fan-out stderr:\n{err}");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.lines().any(|l| l.starts_with("node-a:  Client:")),
        "{out}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("node-x:  berthctl: error: cannot connect")),
        "{err}"
    );
    assert!(err.contains("1 of 2 nodes failed: node-x"), "{err}");
    let o = ctl(
        &config,
        &["--context", "lab", "--nodes", "node-a", "images", "ls"],
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let o = ctl(
        &config,
        &[
            "--context",
            "lab",
            "--nodes",
            "node-a",
            "namespaces",
            "create",
            "y",
        ],
    );
    let (_, err) = text(&o);
    assert!(
        err.contains("read verbs, `system upgrade` and `system reboot` only"),
        "{err}"
    );
    // Init is not there on a host: the listener says so, in the node's name.
    let (_, err) = text(&ctl(&config, &["system", "status"]));
    println!("system status: {err}");
    assert!(
        err.contains("UNAVAILABLE: berth-init is unavailable"),
        "{err}"
    );
    // pki show reads back the role and the serial a deny list takes.
    let shown = ok(
        &config,
        &["pki", "show", &format!("{}/rita.pem", pki.display())],
    );
    assert!(
        shown.contains("role:        reader") && shown.contains("serial:"),
        "{shown}"
    );
    let fp = ok(
        &config,
        &["pki", "fingerprint", &format!("{}/ca.pem", pki.display())],
    );
    assert!(fp.starts_with("sha256:") && fp.trim().len() == 71, "{fp}");
}
