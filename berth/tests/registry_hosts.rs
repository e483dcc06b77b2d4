//! Registry host configuration through a running berthd: `berthctl hosts resolve` follows
//! edits of hosts.toml with no restart, SIGHUP and `berthctl config reload` apply registry,
//! GC and log changes, and an invalid edit is refused while the old configuration keeps
//! working.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_test_support::support;
use support::{berthctl as ctl, start_berthd_piped as start, write_berthd_config as write_config};

/// `hosts resolve REF --format json`, the endpoint URLs with `?ns=`.
fn resolve(socket: &Path, reference: &str) -> Result<Vec<String>, String> {
    let out = ctl(socket, &["hosts", "resolve", reference, "--format", "json"]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["ns"].as_str() {
            Some(ns) => format!("{}?ns={ns}", e["url"].as_str().unwrap()),
            None => e["url"].as_str().unwrap().to_string(),
        })
        .collect())
}

fn hosts_file(certs: &Path, dir: &str, text: &str) -> PathBuf {
    let d = certs.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("hosts.toml");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn hosts_resolve_follows_hosts_toml_edits_without_restart() {
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    hosts_file(&certs, "_default", "server = \"http://10.0.2.2:5000\"\n");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[plugins.\"berth.registry.v1\"]\nconfig_path = \"{}\"\n\
             [plugins.\"berth.registry.v1\".auths.\"10.0.2.2:5000\"]\nusername = \"u\"\npassword = \"p\"\n",
            certs.display()
        ),
    );
    let mut d = start(dir.path(), &cfg);
    assert_eq!(
        resolve(&d.socket, "alpine").unwrap(),
        vec!["http://10.0.2.2:5000/v2?ns=docker.io"]
    );
    let plugins = String::from_utf8(ctl(&d.socket, &["plugins", "ls", "-q"]).stdout).unwrap();
    for id in ["berth.service.v1.registry", "berth.service.v1.config"] {
        assert!(plugins.lines().any(|l| l == id), "{id} missing:\n{plugins}");
    }
    // The full JSON: capabilities, source, credentials.
    let out = ctl(
        &d.socket,
        &["hosts", "resolve", "alpine:3", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["registry"], "docker.io");
    assert_eq!(v["repository"], "library/alpine");
    assert_eq!(v["object"], "3");
    let e = &v["endpoints"][0];
    assert_eq!(
        e["capabilities"],
        serde_json::json!(["pull", "resolve", "push"])
    );
    assert_eq!(e["credentials"], true);
    assert_eq!(
        e["source"],
        certs.join("_default/hosts.toml").display().to_string()
    );

    // A registry of its own, with an ordered mirror list: applies on the next call.
    hosts_file(
        &certs,
        "docker.io",
        "server = \"https://registry-1.docker.io\"\n\
         [host.\"http://m1:5000\"]\ncapabilities = [\"pull\", \"resolve\"]\n\
         [host.\"https://m2\"]\ncapabilities = [\"pull\"]\nskip_verify = true\n",
    );
    assert_eq!(
        resolve(&d.socket, "docker.io/library/alpine:3").unwrap(),
        vec![
            "http://m1:5000/v2?ns=docker.io",
            "https://m2/v2?ns=docker.io",
            "https://registry-1.docker.io/v2"
        ]
    );
    let table = String::from_utf8(ctl(&d.socket, &["hosts", "resolve", "alpine"]).stdout).unwrap();
    println!("{table}");
    assert!(
        table.contains("https://m2/v2") && table.contains("skip_verify"),
        "{table}"
    );

    // An invalid edit: the error names the file and line, and berthd keeps serving.
    let f = hosts_file(
        &certs,
        "docker.io",
        "[host.\"http://m1:5000\"]\ncapabilities = [\"pull\", \"pul\"]\n",
    );
    let err = resolve(&d.socket, "alpine").unwrap_err();
    assert!(
        err.contains(&format!(
            "{}:2: host \"http://m1:5000\": unknown capability \"pul\"",
            f.display()
        )) && err.contains("FAILED_PRECONDITION"),
        "{err}"
    );
    // Other registries are unaffected.
    assert_eq!(
        resolve(&d.socket, "quay.io/o/r").unwrap(),
        vec!["http://10.0.2.2:5000/v2?ns=quay.io"]
    );
    let bad_ref = resolve(&d.socket, "UPPER/x").unwrap_err();
    assert!(bad_ref.contains("INVALID_ARGUMENT"), "{bad_ref}");
    assert!(d.alive());
    d.stop();
    println!("hosts_resolve test took {:?}", t.elapsed());
}

#[test]
fn sighup_and_reload_call_apply_registry_gc_log_and_refuse_invalid() {
    let t = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("certs-a");
    let b = dir.path().join("certs-b");
    hosts_file(&a, "_default", "server = \"http://mirror-a:5000\"\n");
    hosts_file(&b, "_default", "server = \"http://mirror-b:5000\"\n");
    let section = |certs: &Path, extra: &str| {
        format!(
            "[debug]\nlevel = \"info\"\n{extra}[plugins.\"berth.registry.v1\"]\nconfig_path = \"{}\"\n",
            certs.display()
        )
    };
    let cfg = write_config(dir.path(), &section(&a, ""));
    let mut d = start(dir.path(), &cfg);
    assert_eq!(
        resolve(&d.socket, "alpine").unwrap(),
        vec!["http://mirror-a:5000/v2?ns=docker.io"]
    );

    // SIGHUP after editing berthd.toml: registry, GC (collect every second) and log level.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(&a.display().to_string(), &b.display().to_string())
            .replace("level = \"info\"", "level = \"debug\"")
            + "[plugins.\"berth.gc.v1.scheduler\"]\ninterval_secs = 1\npoll_secs = 1\n",
    )
    .unwrap();
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    // Hang guard: the reload is applied when the answer changes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = resolve(&d.socket, "alpine").unwrap();
        if r == vec!["http://mirror-b:5000/v2?ns=docker.io"] {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP not applied: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the new GC schedule collect at least once.
    std::thread::sleep(Duration::from_millis(2500));

    // The API call: an invalid edit is refused with file and line; the old config stays.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, good.replace("config_path", "config_pth")).unwrap();
    let line = good
        .lines()
        .position(|l| l.starts_with("config_path"))
        .unwrap()
        + 1;
    let out = ctl(&d.socket, &["config", "reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("reload rejected, keeping the running configuration")
            && err.contains(&format!(
                "{}:{line}: [plugins.\"berth.registry.v1\"] config_pth: unknown field",
                cfg.display()
            )),
        "{err}"
    );
    // A SIGHUP with the invalid file neither kills berthd nor changes anything.
    nix::sys::signal::kill(d.pid(), nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.alive(), "berthd died on SIGHUP with an invalid config");
    assert_eq!(
        resolve(&d.socket, "alpine").unwrap(),
        vec!["http://mirror-b:5000/v2?ns=docker.io"]
    );

    // A valid edit through the API: registry back to a, and root (needs a restart).
    std::fs::write(
        &cfg,
        good.replace(&b.display().to_string(), &a.display().to_string())
            .replace(
                &format!("root = \"{}/root\"", dir.path().display()),
                "root = \"/elsewhere\"",
            ),
    )
    .unwrap();
    let out = ctl(&d.socket, &["config", "reload", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["applied"], serde_json::json!(["registry"]));
    assert_eq!(r["needs_restart"], serde_json::json!(["root"]));
    assert_eq!(
        resolve(&d.socket, "alpine").unwrap(),
        vec!["http://mirror-a:5000/v2?ns=docker.io"]
    );

    let log = d.stop();
    println!("--- berthd log ---\n{log}");
    assert!(log.contains("reload: debug.level changed"), "{log}");
    assert!(log.contains("reload: gc schedule changed"), "{log}");
    assert!(
        log.contains("gc: collected") && log.contains("Interval"),
        "{log}"
    );
    assert!(log.contains("reload: registry settings changed"), "{log}");
    assert!(
        log.contains("reload rejected, keeping the running configuration"),
        "{log}"
    );
    assert!(
        log.contains("these changes take effect after a restart of berthd"),
        "{log}"
    );
    println!("reload test took {:?}", t.elapsed());
}
