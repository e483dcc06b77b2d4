//! Node-wide settings init applies before any service starts: the cgroup tree
//! ([`crate::cgroup`]), `[sysctl]` ([`crate::sysctl`]) and `[rlimits]` ([`crate::rlimit`]).
//! Each problem is one console line naming the key; nothing here stops the boot.

use std::path::Path;

use crate::cgroup::{self, Tree};
use crate::config::Config;
use crate::console::Console;
use crate::{rlimit, sysctl};

/// Sets up the cgroup tree under [`cgroup::ROOT`] and moves init into `init.scope`; says on
/// the console what was enabled and what failed. `None` (services then run without cgroups)
/// without cgroup v2, or outside PID 1 (development on a host: the host's cgroups are left
/// alone). Call before init starts threads and services.
pub fn setup_cgroups(console: Console) -> Option<Tree> {
    if std::process::id() != 1 {
        console.info("cgroup: not PID 1; services run without cgroups");
        return None;
    }
    match Tree::setup(Path::new(cgroup::ROOT), 1) {
        Ok((tree, report)) => {
            for e in &report.errors {
                console.error(&format!("cgroup: {e}"));
            }
            console.info(&format!(
                "cgroup: init in {}; controllers enabled: {}",
                cgroup::INIT_SCOPE,
                if report.enabled.is_empty() {
                    "none".into()
                } else {
                    report.enabled.join(" ")
                }
            ));
            Some(tree)
        }
        Err(e) => {
            console.error(&format!("cgroup: {e}; services run without cgroups"));
            None
        }
    }
}

/// Writes the sysctls, then sets the rlimits (`fs.nr_open` must be raised before a large
/// `nofile`). Call after every configuration layer is known and modules are loaded (a module
/// such as `br_netfilter` brings its keys), before services start so they inherit the limits.
pub fn apply_settings(config: &Config, console: Console) {
    let root = Path::new(sysctl::PROC_SYS);
    let applied = sysctl::apply(root, &config.sysctl);
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
}
