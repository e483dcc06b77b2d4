//! Node-wide settings init applies before any service starts: the cgroup tree
//! ([`crate::cgroup`]), `[sysctl]` ([`crate::sysctl`]) and `[rlimits]` ([`crate::rlimit`]).
//! Each problem is one console line naming the key; nothing here stops the boot.

use std::path::Path;

use crate::cgroup::{self, Tree};
use crate::config::Config;
use crate::console::Console;
use crate::{rlimit, sysctl};

/// What [`prepare`] leaves for later.
#[derive(Debug)]
pub struct Prepared {
    /// The cgroup tree, when cgroup v2 is there.
    pub cgroups: Option<Tree>,
    /// Sysctls whose key did not exist yet (a module loaded later may bring it): retry with
    /// [`retry_sysctls`] once modules are loaded.
    pub sysctl_missing: sysctl::Sysctls,
}

/// Sets up the cgroup tree (moving init into `init.scope`), writes the sysctls and sets the
/// rlimits, in that order (`fs.nr_open` must be raised before a large `nofile`). Call before
/// starting threads and services.
pub fn prepare(config: &Config, console: Console) -> Prepared {
    // Outside PID 1 (development on a host) leave the host's cgroups alone.
    let pid1 = std::process::id() == 1;
    let setup = if pid1 { Some(Tree::setup(Path::new(cgroup::ROOT), 1)) } else { None };
    let cgroups = match setup {
        None => {
            console.info("cgroup: not PID 1; services run without cgroups");
            None
        }
        Some(Ok((tree, report))) => {
            for e in &report.errors {
                console.error(&format!("cgroup: {e}"));
            }
            console.info(&format!(
                "cgroup: init in {}; controllers enabled: {}",
                cgroup::INIT_SCOPE,
                if report.enabled.is_empty() { "none".into() } else { report.enabled.join(" ") }
            ));
            Some(tree)
        }
        Some(Err(e)) => {
            console.error(&format!("cgroup: {e}; services run without cgroups"));
            None
        }
    };
    let applied = sysctl::apply(Path::new(sysctl::PROC_SYS), &config.sysctl);
    for e in &applied.errors {
        console.error(&format!("{e}; skipped"));
    }
    if !applied.ok.is_empty() {
        console.info(&format!("sysctl: set {}", applied.ok.join(" ")));
    }
    let (ok, errors) = rlimit::apply(&config.rlimits);
    for e in &errors {
        console.error(&format!("{e}; skipped"));
    }
    if !ok.is_empty() {
        console.info(&format!("rlimits: set {}", ok.join(" ")));
    }
    Prepared { cgroups, sysctl_missing: applied.missing }
}

/// Writes the sysctls that were missing at [`prepare`] time; reports those still missing.
pub fn retry_sysctls(missing: &sysctl::Sysctls, console: Console) {
    if missing.0.is_empty() {
        return;
    }
    let root = Path::new(sysctl::PROC_SYS);
    let applied = sysctl::apply(root, missing);
    for e in applied.errors.iter().chain(sysctl::missing_errors(root, &applied.missing).iter()) {
        console.error(&format!("{e}; skipped"));
    }
    if !applied.ok.is_empty() {
        console.info(&format!("sysctl: set {} (after loading modules)", applied.ok.join(" ")));
    }
}
