//! `/etc/berth/init.toml`: init's configuration.
//!
//! Layers, later wins: the built-in defaults ([`Config::default`], equal to
//! `configs/init.toml` without its `[[service]]` entries) → the image's
//! `/etc/berth/init.toml` → the node file on the state disk (`/var/etc/berth/node.toml`,
//! per-node settings and secrets, since a UKI's command line is fixed) → the `berth.`
//! arguments of the kernel command line ([`Config::load_layers`], [`crate::cmdline`]).
//! Files apply key by key (a file that sets only `[berthd] max_failures` keeps every other
//! value); `[[service]]` entries of later files are added to earlier ones.
//!
//! Validation is up front and costs only what is wrong: an invalid key (unknown, wrong type,
//! out of range) is reported as one line naming the file, the line and the key, and that key
//! keeps the value of the layer below; a file that is not TOML at all is skipped whole; each
//! invalid command-line argument is skipped alone. The node always comes up.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::console::Level;

mod load;
#[cfg(test)]
mod tests;

pub use load::{ConfigError, Loaded};

/// Where stage 2 reads its configuration.
pub const DEFAULT_PATH: &str = berth_layout::paths::INIT_CONFIG;

/// What to do when init hits a fatal error (a bug, a panic): never exit, since PID 1 exiting
/// panics the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FatalAction {
    /// Power the machine off.
    Poweroff,
    /// Reboot.
    Reboot,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[console]`.
    pub console: ConsoleConfig,
    /// `[modules]`.
    pub modules: ModulesConfig,
    /// `[berthd]`.
    pub berthd: BerthdConfig,
    /// `[bridge]`.
    pub bridge: BridgeConfig,
    /// `[shutdown]`.
    pub shutdown: ShutdownConfig,
    /// `[network]` (docs/networking.md).
    pub network: crate::net::NetworkConfig,
    /// `[time]` (docs/networking.md).
    pub time: crate::time::TimeConfig,
    /// `[log]`: the log ring, file and forwarding (`crate::log::config`).
    pub log: crate::log::LogConfig,
    /// `[[service]]`: extra supervised services.
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
    /// `[sysctl]`: kernel parameters written at boot (`crate::sysctl`).
    pub sysctl: crate::sysctl::Sysctls,
    /// `[rlimits]`: resource limits of init, inherited by every service (`crate::rlimit`).
    pub rlimits: crate::rlimit::Rlimits,
    /// `[storage]`: the state partition mounted at `/var`.
    pub storage: crate::state_disk::StateDiskConfig,
    /// `[remote_config]`: fetching `berth.config=<url>` (`crate::remote_config`).
    pub remote_config: crate::remote_config::RemoteConfig,
    /// `[boot]`: UEFI A/B slots and the trial-boot watchdog ([`crate::slots`]).
    pub boot: crate::slots::BootConfig,
    /// `[zfs]`: the ZFS pool imported before berthd (docs/zfs.md).
    pub zfs: crate::zfs::ZfsConfig,
    /// `[remote]`: the remote API listener and the node's credentials
    /// ([`crate::remote_api`], docs/remote-api.md).
    pub remote: crate::remote_api::RemoteApiConfig,
}

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// `error`, `warn`, `info` or `debug`.
    pub level: Level,
}

/// `[modules]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModulesConfig {
    /// Modules to load (with their dependencies) from `/lib/modules/<kver>/`, in order.
    /// Built-in or already loaded modules are fine.
    pub load: Vec<String>,
}

/// `[berthd]`: the engine, started and supervised by init.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BerthdConfig {
    /// The executable.
    pub path: PathBuf,
    /// Its arguments (after `argv[0]`).
    pub args: Vec<String>,
    /// Its API address, polled with a Version call to decide it is ready.
    pub address: String,
    /// How long a start may take before berthd counts as failed and is restarted.
    pub ready_timeout_secs: u64,
    /// Failed starts in a row after which init gives up.
    pub max_failures: u32,
    /// First restart delay; doubles on each failure in a row.
    pub backoff_initial_ms: u64,
    /// Upper bound of the restart delay.
    pub backoff_max_ms: u64,
    /// SIGTERM-to-SIGKILL grace at shutdown or restart; unset: `[shutdown] timeout_secs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout_secs: Option<u64>,
    /// `[berthd.resources]`: reservations and limits of berthd's cgroup.
    pub resources: crate::cgroup::Resources,
}

/// `[bridge]`: the virtio-serial port bridged to berthd's socket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// The virtio-serial port name (`/sys/class/virtio-ports/*/name`); empty disables the bridge.
    pub port: String,
    /// How long to wait for the port to appear after loading virtio_console.
    pub wait_secs: u64,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long services get between SIGTERM and SIGKILL.
    pub timeout_secs: u64,
    /// `poweroff` or `reboot` after a fatal init error.
    pub on_fatal: FatalAction,
    /// Power off when the ACPI power button is pressed (QEMU `system_powerdown`).
    pub power_button: bool,
}

/// One `[[service]]`: an extra process init starts after berthd and supervises.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name used on the console and in messages.
    pub name: String,
    /// The executable.
    pub path: PathBuf,
    /// Its arguments (after `argv[0]`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Quick exits in a row after which init gives up (default 5).
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// First restart delay in milliseconds (default 200).
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Upper bound of the restart delay in milliseconds (default 5000).
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// When an exit is followed by a restart: `always` (default), `on-failure`, `never`.
    #[serde(default)]
    pub restart: crate::supervisor::RestartPolicy,
    /// SIGTERM-to-SIGKILL grace at shutdown or restart; unset: `[shutdown] timeout_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout_secs: Option<u64>,
    /// `[service.resources]`: reservations and limits of the service's cgroup.
    #[serde(default)]
    pub resources: crate::cgroup::Resources,
}

fn default_max_failures() -> u32 {
    5
}
fn default_backoff_initial_ms() -> u64 {
    200
}
fn default_backoff_max_ms() -> u64 {
    5000
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { level: Level::Info }
    }
}

impl Default for ModulesConfig {
    fn default() -> Self {
        Self {
            load: [
                "virtio_pci",
                "virtio_console",
                "virtio_net",
                "virtio_blk",
                "overlay",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Default for BerthdConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/usr/bin/berthd"),
            args: Vec::new(),
            address: "/run/berth/berthd.sock".into(),
            ready_timeout_secs: 60,
            max_failures: default_max_failures(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            stop_timeout_secs: None,
            resources: crate::cgroup::Resources::default(),
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            port: berth_layout::ports::API.into(),
            wait_secs: 5,
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 10,
            on_fatal: FatalAction::Poweroff,
            power_button: true,
        }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Config {
    fn default() -> Self {
        Self {
            console: ConsoleConfig::default(),
            modules: ModulesConfig::default(),
            berthd: BerthdConfig::default(),
            bridge: BridgeConfig::default(),
            shutdown: ShutdownConfig::default(),
            network: crate::net::NetworkConfig::default(),
            time: crate::time::TimeConfig::default(),
            log: crate::log::LogConfig::default(),
            services: Vec::new(),
            sysctl: crate::sysctl::Sysctls::default(),
            rlimits: crate::rlimit::Rlimits::new(),
            storage: crate::state_disk::StateDiskConfig::default(),
            remote_config: crate::remote_config::RemoteConfig::default(),
            boot: crate::slots::BootConfig::default(),
            zfs: crate::zfs::ZfsConfig::default(),
            remote: crate::remote_api::RemoteApiConfig::default(),
        }
    }
}

impl BerthdConfig {
    /// `ready_timeout_secs` as a duration.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }
}
