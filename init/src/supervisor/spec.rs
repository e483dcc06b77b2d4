//! What to run: one service's configuration as the supervisor gets it (built from
//! init.toml's `[berthd]` and `[[service]]` tables by stage 2).

use std::path::PathBuf;
use std::time::Duration;

use super::policy::{Backoff, RestartPolicy};
use crate::cgroup::Resources;

/// How init decides a service is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// berthd: a Version call on `address` answered. The first time, init prints
    /// `berth ready`. Services with this readiness are the engine: stopped last.
    Version {
        /// API address.
        address: String,
        /// Give up waiting (and kill it) after this long.
        timeout: Duration,
    },
    /// Ready as soon as it runs.
    Running,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Console and message name; also its cgroup `system.slice/<name>`.
    pub name: String,
    /// Executable.
    pub path: PathBuf,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Failures in a row before giving up.
    pub max_failures: u32,
    /// Restart delays.
    pub backoff: Backoff,
    /// How readiness is decided.
    pub readiness: Readiness,
    /// When an exit is followed by a restart.
    pub restart: RestartPolicy,
    /// SIGTERM-to-SIGKILL grace when the service is stopped.
    pub stop_timeout: Duration,
    /// cgroup reservations and limits.
    pub resources: Resources,
    /// Where the service is configured, for messages (`berthd`, `service[0]`).
    pub config_key: String,
}
