//! Reloading init's configuration while the node runs: on SIGHUP, on the control API's
//! `Reload`, and after `NodeConfigPut` with `reload`. The main loop owns it (the supervisor
//! lives there).
//!
//! Init reads its layers again — the image's init.toml, the node file, the `berth.config`
//! document kept from boot, the kernel command line — and applies what can change while the
//! node runs:
//! - `[remote]`: the listener starts (credentials arrived), stops (removed, `enabled =
//!   "off"`), restarts (new address or port), or reloads its credentials and deny list
//!   (SIGHUP: the listener closes the connections of newly denied serials);
//! - the clock floor of new credentials ([`crate::time::floor`]);
//! - berthd is asked to reload too (SIGHUP): its drop-ins and registry settings.
//!
//! Every other section is used at boot only; a reload that finds one changed says so
//! (`applied at the next boot: [network], [time]`) rather than half-applying it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::sys::signal::Signal;

use crate::config::Config;
use crate::console::Console;
use crate::remote_api;
use crate::supervisor::Supervisor;

/// What a reload did, for the API's answer (each line is also on the console).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// What was applied or noted.
    pub applied: Vec<String>,
    /// Invalid keys, with file and line.
    pub errors: Vec<String>,
}

/// What the main loop keeps between reloads.
#[derive(Debug)]
pub struct Node {
    /// The configuration in force.
    pub config: Config,
    /// The files of the layers, in order (missing ones are skipped when read).
    pub files: Vec<PathBuf>,
    /// The kernel command line.
    pub cmdline: String,
    /// The remote API's setup in force.
    pub remote: Option<remote_api::Setup>,
}

impl Node {
    /// The remote API's credential files in force, for the clock floor.
    pub fn credential_files(&self) -> Vec<&Path> {
        self.remote
            .iter()
            .flat_map(|s| [s.ca.as_path(), s.cert.as_path()])
            .collect()
    }
}

/// Applies `[remote]` of `node.config` and the clock floor of its credentials; used at boot
/// and by [`reload`]. Returns the lines said.
pub fn apply_remote(
    node: &mut Node,
    supervisor: &mut Supervisor,
    console: Console,
    now: Instant,
) -> Vec<String> {
    let plan = remote_api::plan(&node.config.remote, Path::new(remote_api::RUN_DIR));
    // A new certificate's start of validity moves the floor: before the listener starts, so
    // its first handshakes already see a clock the certificates are valid at.
    let mut lines = Vec::new();
    if let remote_api::Plan::On(setup) = &plan {
        let files = [setup.ca.as_path(), setup.cert.as_path()];
        if let Some(floor) = crate::time::floor::compute(
            Path::new(berth_layout::paths::BUILD_EPOCH),
            Path::new(crate::time::floor::RECORD),
            &files,
        ) {
            lines.extend(crate::time::floor::enforce(&floor, console));
        }
    }
    lines.push(remote_api::apply(
        plan,
        &mut node.remote,
        supervisor,
        console,
        now,
    ));
    lines
}

/// Top-level sections of `a` and `b` that differ.
fn changed_sections(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(ta), Ok(tb)) = (toml::Table::try_from(a), toml::Table::try_from(b)) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| ta.get(*k) != tb.get(*k))
        .map(|k| {
            if k == "service" {
                "[[service]]".to_string()
            } else {
                format!("[{k}]")
            }
        })
        .collect()
}

/// Reads the layers again and applies what can change now (see the module docs).
pub fn reload(
    node: &mut Node,
    supervisor: &mut Supervisor,
    console: Console,
    now: Instant,
) -> ReloadReport {
    console.info("config: reloading");
    let files: Vec<&Path> = node.files.iter().map(PathBuf::as_path).collect();
    let loaded = Config::load_layers(&files, &node.cmdline);
    let mut report = ReloadReport::default();
    for err in &loaded.file_errors {
        let line = format!("{err}; {}", err.consequence());
        console.error(&line);
        report.errors.push(line);
    }
    let mut later = changed_sections(&node.config, &loaded.config);
    later.retain(|s| s != "[remote]");
    node.config = loaded.config;
    report
        .applied
        .extend(apply_remote(node, supervisor, console, now));
    if supervisor.signal("berthd", Signal::SIGHUP) {
        report
            .applied
            .push("berthd: asked to reload its configuration (SIGHUP)".into());
    }
    if !later.is_empty() {
        let line = format!(
            "config: {} changed; applied at the next boot",
            later.join(", ")
        );
        console.info(&line);
        report.applied.push(line);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_sections_are_named() {
        let a = Config::default();
        let mut b = Config::default();
        b.time.wait_secs += 1;
        b.remote.port = 1;
        assert_eq!(changed_sections(&a, &b), ["[remote]", "[time]"]);
        assert!(changed_sections(&a, &a).is_empty());
    }
}
