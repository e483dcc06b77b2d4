//! berthd and berthctl as processes on the host: serving, socket mode, config errors, reload.

use std::{os::unix::fs::PermissionsExt, path::Path, process::Command, time::Duration};

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");

use berth_test_support::support;
use support::{berthctl as ctl, start_berthd_piped as start, write_berthd_config as write_config};

#[test]
fn serves_version_and_plugins_on_a_private_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let d = start(dir.path(), &cfg);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    assert!(dir.path().join("root").is_dir());

    let out = ctl(&d.socket, &["version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Server:"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");

    let out = ctl(&d.socket, &["plugins", "ls"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("TYPE"), "{text}");
    assert!(
        text.contains("berth.service.v1") && text.contains("version") && text.contains("ok"),
        "{text}"
    );

    let out = ctl(
        &d.socket,
        &["plugins", "ls", "--format", "json", "-f", "id==dirs"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        v[0]["exports"]["root"],
        format!("{}/root", dir.path().display())
    );

    // A bad filter is the caller's error, reported as such.
    let out = ctl(&d.socket, &["plugins", "ls", "-f", "colour==blue"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("INVALID_ARGUMENT") && err.contains("colour==blue"),
        "{err}"
    );
}

#[test]
fn bad_config_is_one_line_naming_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("berthd.toml");
    std::fs::write(&cfg, "version = 1\n\n[ttrpc]\nadress = \"/tmp/x.sock\"\n").unwrap();
    let out = Command::new(BERTHD)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(berth_daemon::EXIT_CONFIG));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let want = format!(
        "berthd: error: {}:4: key ttrpc.adress: unknown field `adress`",
        cfg.display()
    );
    assert!(err.starts_with(&want), "{err}");
}

#[test]
fn refuses_a_socket_another_berthd_serves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let _d = start(dir.path(), &cfg);
    let out = Command::new(BERTHD)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another berthd is already serving"), "{err}");
}

#[test]
fn unreachable_daemon_is_a_clear_client_error() {
    let out = ctl(Path::new("/nonexistent/berthd.sock"), &["version"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "berthctl: error: cannot connect to berthd at unix:///nonexistent/berthd.sock"
        ),
        "{err}"
    );
}

#[test]
fn sighup_reloads_and_a_bad_edit_keeps_it_running() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[debug]\nlevel = \"info\"\n");
    let mut d = start(dir.path(), &cfg);
    let pid = d.pid();

    write_config(dir.path(), "[debug]\nlevel = \"debug\"\n");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&cfg, "version = 1\nroot = 5\n").unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(300));

    assert!(d.alive(), "berthd died on SIGHUP");
    assert!(ctl(&d.socket, &["version"]).status.success());

    let log = d.stop();
    assert!(log.contains("reload: debug.level changed"), "{log}");
    assert!(
        log.contains("reload rejected, keeping the running configuration")
            && log.contains(":2: key root"),
        "{log}"
    );
    assert!(!d.socket.exists(), "socket removed on shutdown");
}
