//! The remote API as a service of init: `berth-apid` (the multi-call binary's listener,
//! crate `berth-remote`, docs/remote-api.md) runs in `system.slice/berth-apid` with memory and
//! CPU limits, its output (errors and the audit lines of mutating calls) in init's log like
//! any service's, and only when the node has its CA, certificate and key: with
//! `[remote] enabled = "auto"` (the default) a node without them listens on nothing.
//!
//! Init renders the listener's own file ([`APID_FILE`], under `/run`) from `[remote]`: inline
//! PEM credentials are written next to it (tmpfs, 0600) so they never reach the state disk or
//! a command line; paths are passed as they are (a private key on the state disk is made 0600
//! if it is not). [`plan`] decides (pure but for looking at the credential files), [`apply`]
//! acts on the supervisor: start, stop, restart for a new address, or SIGHUP for new
//! credentials and deny list (the listener swaps them and closes connections of newly denied
//! serials).

pub mod config;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use config::{Credential, Enabled, RemoteApiConfig};

use crate::console::Console;
use crate::supervisor::{Backoff, Readiness, RestartPolicy, ServiceSpec, Supervisor};

/// The service's name (and cgroup `system.slice/berth-apid`).
pub const SERVICE: &str = "berth-apid";
/// Where init writes the listener's file and inline credentials (tmpfs).
pub const RUN_DIR: &str = "/run/berth/remote";
/// The listener's configuration file, rendered by init.
pub const APID_FILE: &str = "/run/berth/remote/apid.toml";

/// What to do about the remote API.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Nothing listens; `reason` says why in words, `error` when it is a mistake (enabled
    /// but unusable) rather than a choice.
    Off {
        /// Why.
        reason: String,
        /// Whether this is an error.
        error: bool,
    },
    /// Run the listener with this setup.
    On(Box<Setup>),
}

/// A runnable listener setup.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// Where it listens.
    pub listen: SocketAddr,
    /// Credential files as the listener reads them.
    pub ca: PathBuf,
    /// The node certificate file.
    pub cert: PathBuf,
    /// The key file.
    pub key: PathBuf,
    /// Inline credentials to write first: (file, PEM).
    pub inline: Vec<(PathBuf, Credential)>,
    /// Number of denied serials.
    pub denied: usize,
    /// The listener's file ([`APID_FILE`]).
    pub file: String,
    /// The executable.
    pub path: PathBuf,
    /// Its cgroup limits.
    pub resources: crate::cgroup::Resources,
}

/// Decides from `cfg`, with inline credentials placed under `run_dir`.
pub fn plan(cfg: &RemoteApiConfig, run_dir: &Path) -> Plan {
    if cfg.enabled == Enabled::Off {
        return Plan::Off {
            reason: "[remote] enabled = \"off\"".into(),
            error: false,
        };
    }
    let mut inline = Vec::new();
    let mut missing = Vec::new();
    let mut file_of = |what: &str, name: &str, c: &Credential| -> PathBuf {
        match c {
            Credential::Inline(_) => {
                let p = run_dir.join(name);
                inline.push((p.clone(), c.clone()));
                p
            }
            Credential::Path(p) => {
                if !p.is_file() {
                    missing.push(format!("{what} {}", p.display()));
                }
                p.clone()
            }
        }
    };
    let ca = file_of("CA certificate", "ca.pem", &cfg.ca);
    let cert = file_of("certificate", "node.pem", &cfg.cert);
    let key = file_of("key", "node.key", &cfg.key);
    if !missing.is_empty() {
        let on = cfg.enabled == Enabled::On;
        return Plan::Off {
            reason: format!(
                "no {} on this node{}",
                missing.join(", "),
                if on {
                    " although [remote] enabled = \"on\""
                } else {
                    " (put them with `berthctl node config put remote/…`, see docs/remote-api.md)"
                }
            ),
            error: on,
        };
    }
    let listen = SocketAddr::new(cfg.address.0, cfg.port);
    Plan::On(Box::new(Setup {
        file: render(cfg, listen, &ca, &cert, &key),
        listen,
        ca,
        cert,
        key,
        inline,
        denied: cfg.deny_serials.len(),
        path: cfg.path.clone(),
        resources: cfg.resources.clone(),
    }))
}

/// The listener's TOML file (`berth-remote::apid`'s schema).
fn render(cfg: &RemoteApiConfig, listen: SocketAddr, ca: &Path, cert: &Path, key: &Path) -> String {
    let mut t = toml::Table::new();
    t.insert("listen".into(), listen.to_string().into());
    for (k, p) in [("ca", ca), ("cert", cert), ("key", key)] {
        t.insert(k.into(), p.display().to_string().into());
    }
    let deny: Vec<toml::Value> = cfg
        .deny_serials
        .iter()
        .map(|s| toml::Value::from(s.0.clone()))
        .collect();
    t.insert("deny_serials".into(), deny.into());
    if let Ok(toml::Value::Table(limits)) = toml::Value::try_from(&cfg.limits) {
        if !limits.is_empty() {
            t.insert("limits".into(), limits.into());
        }
    }
    format!(
        "# Written by berth-init from [remote] (docs/remote-api.md); rewritten at every reload.\n{}",
        toml::to_string(&t).unwrap_or_default()
    )
}

/// The service that runs the listener of `setup`.
pub fn spec(setup: &Setup) -> ServiceSpec {
    ServiceSpec {
        name: SERVICE.into(),
        path: setup.path.clone(),
        args: vec!["--config".into(), APID_FILE.into()],
        max_failures: 5,
        backoff: Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        },
        readiness: Readiness::Running,
        restart: RestartPolicy::Always,
        stop_timeout: Duration::from_secs(5),
        resources: setup.resources.clone(),
        config_key: "remote".into(),
    }
}

/// Writes the inline credentials and the listener's file under `run_dir`, and makes a private
/// key file 0600 when it is readable by others (with a warning).
fn write_files(setup: &Setup, run_dir: &Path, console: Console) -> std::io::Result<()> {
    std::fs::create_dir_all(run_dir)?;
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700))?;
    for (path, c) in &setup.inline {
        if let Credential::Inline(text) = c {
            crate::atomic::write(path, text.as_bytes(), 0o600)?;
        }
    }
    if let Ok(meta) = std::fs::metadata(&setup.key) {
        if meta.permissions().mode() & 0o077 != 0 {
            console.warn(&format!(
                "remote API: {} was readable by others (mode {:o}); made 0600",
                setup.key.display(),
                meta.permissions().mode() & 0o777
            ));
            let _ = std::fs::set_permissions(&setup.key, std::fs::Permissions::from_mode(0o600));
        }
    }
    crate::atomic::write(&run_dir.join("apid.toml"), setup.file.as_bytes(), 0o600)
}

/// Applies `plan` to the supervisor; `current` is the setup in force (updated). Returns one
/// line saying what happened (also on the console).
pub fn apply(
    plan: Plan,
    current: &mut Option<Setup>,
    supervisor: &mut Supervisor,
    console: Console,
    now: Instant,
) -> String {
    let setup = match plan {
        Plan::Off { reason, error } => {
            let was_on = current.take().is_some() && supervisor.turn_off(SERVICE, now);
            let line = if was_on {
                format!("remote API: stopped: {reason}")
            } else {
                format!("remote API: off: {reason}")
            };
            if error {
                console.error(&line);
            } else {
                console.info(&line);
            }
            return line;
        }
        Plan::On(setup) => *setup,
    };
    if let Err(e) = write_files(&setup, Path::new(RUN_DIR), console) {
        let line = format!("remote API: cannot write {RUN_DIR}: {e}; not started");
        console.error(&line);
        return line;
    }
    let running = supervisor.is_running(SERVICE);
    // Running with the same address: SIGHUP, always — the credential files may have new
    // contents under the same names (a `node config put remote/node.pem=…`).
    let line = match current.as_ref() {
        Some(old) if running && old.listen == setup.listen && old.path == setup.path => {
            supervisor.upsert(spec(&setup), now);
            supervisor.signal(SERVICE, nix::sys::signal::Signal::SIGHUP);
            format!(
                "remote API: credentials and deny list reloaded ({} denied serial(s))",
                setup.denied
            )
        }
        Some(_) if running => {
            supervisor.upsert(spec(&setup), now);
            let _ = supervisor.restart(SERVICE, now);
            format!("remote API: restarting to listen on {}", setup.listen)
        }
        _ => {
            supervisor.upsert(spec(&setup), now);
            format!(
                "remote API: listening on {} (mutual TLS; {} denied serial(s))",
                setup.listen, setup.denied
            )
        }
    };
    console.info(&line);
    *current = Some(setup);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &Path) -> RemoteApiConfig {
        RemoteApiConfig {
            ca: Credential::Path(dir.join("ca.pem")),
            cert: Credential::Path(dir.join("node.pem")),
            key: Credential::Path(dir.join("node.key")),
            ..RemoteApiConfig::default()
        }
    }

    #[test]
    fn nothing_listens_without_credentials_and_says_which_are_missing() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        match plan(&cfg(dir.path()), &run) {
            Plan::Off { reason, error } => {
                assert!(!error);
                assert!(
                    reason.contains("CA certificate") && reason.contains("node.key"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let on = RemoteApiConfig {
            enabled: Enabled::On,
            ..cfg(dir.path())
        };
        assert!(matches!(plan(&on, &run), Plan::Off { error: true, .. }));
        let off = RemoteApiConfig {
            enabled: Enabled::Off,
            ..cfg(dir.path())
        };
        assert!(matches!(plan(&off, &run), Plan::Off { error: false, .. }));
    }

    #[test]
    fn with_credentials_the_listener_file_names_them_and_the_deny_list() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "node.pem", "node.key"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let mut c = cfg(dir.path());
        c.ca = Credential::Inline(
            "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        );
        c.deny_serials = vec![config::Serial("0aff".into())];
        c.limits.idle_timeout_secs = Some(30);
        c.port = 9443;
        let run = dir.path().join("run");
        let Plan::On(setup) = plan(&c, &run) else {
            panic!("not on")
        };
        assert_eq!(setup.listen.to_string(), "0.0.0.0:9443");
        assert_eq!(setup.ca, run.join("ca.pem"));
        assert_eq!(setup.inline.len(), 1);
        let file: toml::Table = toml::from_str(&setup.file).unwrap();
        assert_eq!(file["deny_serials"][0].as_str(), Some("0aff"));
        assert_eq!(file["limits"]["idle_timeout_secs"].as_integer(), Some(30));
        assert_eq!(
            file["key"].as_str(),
            Some(dir.path().join("node.key").to_str().unwrap())
        );
        assert!(!format!("{setup:?}").contains("AA=="));
        write_files(&setup, &run, Console::default()).unwrap();
        assert!(run.join("apid.toml").is_file() && run.join("ca.pem").is_file());
    }
}
