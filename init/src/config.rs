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

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::console::Level;

/// Where stage 2 reads its configuration.
pub const DEFAULT_PATH: &str = berth_layout::paths::INIT_CONFIG;

/// Errors reading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}: {key}{message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()), key = key.as_ref().map(|k| format!("key {k}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key, when known.
        key: Option<String>,
        /// The parser's message, without location.
        message: String,
    },
}

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
        }
    }
}

impl BerthdConfig {
    /// `ready_timeout_secs` as a duration.
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }
}

impl Config {
    /// Parses `text` (the contents of `path`, used in messages) over the built-in defaults.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let line = inner.span().map(|span| line_of(text, span.start));
            let key = (!key.is_empty() && key != ".").then_some(key);
            let message = inner.message().trim().replace('\n', " ");
            // Without a key the parser failed before reaching one: a syntax error.
            let message = if key.is_none() {
                format!("invalid TOML: {message}")
            } else {
                message
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message,
            }
        })
    }

    /// Parses one file leniently: its table with every invalid key removed (each reported
    /// with file, line and key), so one bad value costs only that value. A file that is not
    /// TOML at all is skipped whole (an empty table and the syntax error).
    pub fn parse_lenient(path: &Path, text: &str) -> (toml::Table, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut table = match text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(_) => {
                errors.extend(Self::parse(path, text).err());
                return (toml::Table::new(), errors);
            }
        };
        // The first error comes with an exact span from the text; later ones (after removing
        // keys) are located by searching the text for the key.
        let mut next = Self::parse(path, text).err();
        // Each round removes one key, so this ends; the bound guards against a key that
        // cannot be removed being reported again.
        for _ in 0..256 {
            let Some(err) = next.take() else {
                return (table, errors);
            };
            let removed = match &err {
                ConfigError::Invalid { key: Some(key), .. } => {
                    crate::layers::remove_path(&mut table, key)
                }
                _ => false,
            };
            if !removed {
                errors.push(err.whole_file());
                return (toml::Table::new(), errors);
            }
            errors.push(err);
            next = serde_path_to_error::deserialize::<_, Self>(toml::Value::Table(table.clone()))
                .err()
                .map(|err| {
                    let key = err.path().to_string();
                    let message = err.into_inner().message().trim().replace('\n', " ");
                    let key = (!key.is_empty() && key != ".").then_some(key);
                    let line = key
                        .as_deref()
                        .and_then(|k| crate::layers::find_line(text, k));
                    ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        key,
                        message,
                    }
                });
        }
        (toml::Table::new(), errors)
    }
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Invalid { path, .. } => path,
        }
    }

    /// The same error, marked as costing the whole file.
    fn whole_file(self) -> Self {
        match self {
            Self::Invalid {
                path,
                line,
                key: Some(key),
                message,
            } => Self::Invalid {
                path,
                line,
                key: None,
                message: format!("key {key}: {message}"),
            },
            other => other,
        }
    }

    /// What init does about the error, for the end of its console line.
    pub fn consequence(&self) -> &'static str {
        match self {
            Self::Invalid { key: Some(_), .. } => {
                "key ignored, using the default or an earlier layer's value"
            }
            _ => "file ignored, using the defaults and the other layers",
        }
    }
}

/// The configuration after all layers, with what went wrong on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration to run with.
    pub config: Config,
    /// Problems in the files: each invalid key (dropped alone) or unusable file (skipped).
    pub file_errors: Vec<ConfigError>,
    /// Each skipped `berth.` argument of the kernel command line.
    pub cmdline_errors: Vec<crate::cmdline::ArgError>,
    /// `berth.config=<url>`: a node configuration fetched after networking
    /// (`crate::remote_config`).
    pub config_url: Option<String>,
}

impl Config {
    /// The layers, later wins: built-in defaults → each of `files` in order (missing ones
    /// are skipped; `[[service]]` entries add up, other keys replace) → the `berth.`
    /// arguments of the kernel command line `cmdline` (see [`crate::cmdline`]). Every
    /// invalid key or argument is dropped alone and reported.
    pub fn load_layers(files: &[&Path], cmdline: &str) -> Loaded {
        let mut base = toml::Table::new();
        let mut file_errors = Vec::new();
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let (table, errors) = Self::parse_lenient(path, &text);
                    file_errors.extend(errors);
                    crate::layers::merge(&mut base, table, &["service"]);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => file_errors.push(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        // Each file is valid on its own after dropping bad keys, and so is their merge.
        let file_config: Self =
            serde_path_to_error::deserialize(toml::Value::Table(base.clone())).unwrap_or_default();
        let schema = toml::Table::try_from(Self::default()).expect("the defaults serialize");
        let overlay = crate::cmdline::Overlay::parse(cmdline, &schema);
        let mut errors = overlay.errors;
        let mut accepted: Vec<&crate::cmdline::Setting> = overlay.settings.iter().collect();
        let config = loop {
            let mut table = base.clone();
            crate::cmdline::Overlay::apply(&mut table, accepted.iter().copied());
            match serde_path_to_error::deserialize::<_, Self>(toml::Value::Table(table)) {
                Ok(config) => break config,
                Err(err) => {
                    // A value of the right TOML type can still be refused (an unknown enum
                    // variant, a number out of range): drop the argument that set it, the
                    // last one for that key, and try again.
                    let key = err.path().to_string();
                    let key = key.split('[').next().unwrap_or_default().to_string();
                    let message = err.into_inner().message().trim().replace('\n', " ");
                    match accepted.iter().rposition(|s| s.key() == key) {
                        Some(index) => {
                            let setting = accepted.remove(index);
                            errors.push(crate::cmdline::ArgError {
                                arg: setting.arg.clone(),
                                message,
                            });
                        }
                        // Not ours (cannot happen for a file that parsed): the file layer alone.
                        None => break file_config,
                    }
                }
            }
        };
        Loaded {
            config,
            file_errors,
            cmdline_errors: errors,
            config_url: overlay.config_url,
        }
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/berth/init.toml"), text)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn shipped_file_equals_defaults_plus_services() {
        let text = include_str!("../../configs/init.toml");
        let config = parse(text).unwrap();
        assert_eq!(
            Config {
                services: Vec::new(),
                ..config
            },
            Config::default()
        );
    }

    #[test]
    fn file_overrides_key_by_key() {
        let config = parse("[berthd]\nmax_failures = 3\n[console]\nlevel = \"debug\"\n").unwrap();
        assert_eq!(config.berthd.max_failures, 3);
        assert_eq!(config.berthd.path, PathBuf::from("/usr/bin/berthd"));
        assert_eq!(config.berthd.backoff_initial_ms, 200);
        assert_eq!(config.console.level, Level::Debug);
        assert_eq!(config.modules, ModulesConfig::default());
    }

    #[test]
    fn services_parse_with_defaults() {
        let config = parse(
            "[[service]]\nname = \"test-agent\"\npath = \"/usr/libexec/berth/berth-test-agent\"\nargs = [\"--port\", \"org.berth.test\"]\n",
        )
        .unwrap();
        assert_eq!(config.services.len(), 1);
        assert_eq!(config.services[0].name, "test-agent");
        assert_eq!(config.services[0].args, ["--port", "org.berth.test"]);
        assert_eq!(config.services[0].max_failures, 5);
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = "# comment\n\n[console]\nlevel = \"info\"\n\n[berthd]\nmax_failures = \"x\"\n";
        let err = parse(text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/berth/init.toml:7: key berthd.max_failures: invalid type: string \"x\", expected u32"
        );
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[berthd]\npath = \"/x\"\nmax_failure = 3\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "/etc/berth/init.toml:3: key berthd.max_failure: unknown field `max_failure`"
            ),
            "{msg}"
        );
    }

    #[test]
    fn unknown_table_is_reported() {
        let err = parse("[console]\nlevel = \"info\"\n[bogus]\nx = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/berth/init.toml:3: key bogus: unknown field `bogus`"),
            "{msg}"
        );
    }

    #[test]
    fn bad_enum_value_is_reported() {
        let err = parse("[shutdown]\non_fatal = \"explode\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "/etc/berth/init.toml:2: key shutdown.on_fatal: unknown variant `explode`"
            ),
            "{msg}"
        );
    }

    #[test]
    fn error_in_service_array_names_index() {
        let err = parse(
            "[[service]]\nname = \"a\"\npath = \"/a\"\n[[service]]\nname = \"b\"\npath = 5\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "/etc/berth/init.toml:6: key service[1].path: invalid type: integer `5`"
            ),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("[console]\nlevel = \"info\"\nthis is not toml\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/berth/init.toml:3: invalid TOML: "),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn missing_file_is_defaults_without_error() {
        let loaded = Config::load_layers(&[Path::new("/nonexistent/init.toml")], "");
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.file_errors.is_empty());
    }

    fn layers(file: Option<&str>, cmdline: &str) -> Loaded {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        Config::load_layers(&[&path], cmdline)
    }

    fn error_lines(loaded: &Loaded) -> Vec<String> {
        loaded
            .cmdline_errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn cmdline_overrides_file_overrides_defaults() {
        let loaded = layers(
            Some(
                "[berthd]\nmax_failures = 3\nbackoff_max_ms = 100\n[console]\nlevel = \"debug\"\n",
            ),
            "console=ttyS0 berth.berthd.max_failures=9 berth.modules.load=a,b quiet",
        );
        assert!(loaded.file_errors.is_empty() && loaded.cmdline_errors.is_empty());
        let c = &loaded.config;
        assert_eq!(c.berthd.max_failures, 9);
        assert_eq!(c.berthd.backoff_max_ms, 100);
        assert_eq!(c.berthd.backoff_initial_ms, 200);
        assert_eq!(c.console.level, Level::Debug);
        assert_eq!(c.modules.load, ["a", "b"]);
    }

    #[test]
    fn cmdline_keeps_file_services() {
        let loaded = layers(
            Some("[[service]]\nname = \"a\"\npath = \"/a\"\n"),
            "berth.bridge.port=",
        );
        assert_eq!(loaded.config.services.len(), 1);
        assert_eq!(loaded.config.bridge.port, "");
    }

    #[test]
    fn cmdline_later_wins_and_bad_values_keep_the_earlier_one() {
        let loaded = layers(
            None,
            "berth.console.level=warn berth.console.level=error berth.console.level=loud",
        );
        assert_eq!(loaded.config.console.level, Level::Error);
        assert_eq!(
            error_lines(&loaded),
            ["kernel command line: berth.console.level=loud: unknown variant `loud`, expected one of `error`, `warn`, `info`, `debug`"]
        );
    }

    #[test]
    fn cmdline_errors_are_skipped_one_by_one() {
        let loaded = layers(
            Some("[berthd]\nmax_failures = 3\n"),
            "berth.berthd.max_failures=x berth.shutdown.on_fatal=explode berth.berthd.max_failures=4294967296 \
             berth.shutdown.timeout_secs=7 berth.nope=1",
        );
        assert_eq!(loaded.config.berthd.max_failures, 3);
        assert_eq!(loaded.config.shutdown.on_fatal, FatalAction::Poweroff);
        assert_eq!(loaded.config.shutdown.timeout_secs, 7);
        let mut lines = error_lines(&loaded);
        lines.sort();
        assert_eq!(
            lines,
            [
                "kernel command line: berth.berthd.max_failures=4294967296: invalid value: integer `4294967296`, expected u32",
                "kernel command line: berth.berthd.max_failures=x: invalid value: expected an unsigned integer",
                "kernel command line: berth.nope=1: unknown key",
                "kernel command line: berth.shutdown.on_fatal=explode: unknown variant `explode`, expected `poweroff` or `reboot`",
            ]
        );
    }

    #[test]
    fn cmdline_applies_over_defaults_when_the_file_is_bad() {
        let loaded = layers(
            Some("[berthd]\nmax_failures = \"x\"\n"),
            "berth.bridge.wait_secs=1",
        );
        assert_eq!(loaded.file_errors.len(), 1);
        assert_eq!(
            loaded.config,
            Config {
                bridge: BridgeConfig {
                    wait_secs: 1,
                    ..BridgeConfig::default()
                },
                ..Config::default()
            }
        );
    }

    #[test]
    fn cmdline_quotes_group_values() {
        let loaded = layers(None, "quiet \"berth.berthd.path=/opt/my berthd\" berth.berthd.args=\"--log level,debug\" x=1");
        assert!(loaded.cmdline_errors.is_empty());
        assert_eq!(loaded.config.berthd.path, PathBuf::from("/opt/my berthd"));
        assert_eq!(loaded.config.berthd.args, ["--log level", "debug"]);
    }

    #[test]
    fn cmdline_config_url_is_kept() {
        let loaded = layers(None, "berth.config=http://10.0.2.2/node.toml");
        assert_eq!(
            loaded.config_url.as_deref(),
            Some("http://10.0.2.2/node.toml")
        );
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn no_cmdline_is_the_file() {
        let loaded = layers(Some("[shutdown]\non_fatal = \"reboot\"\n"), "");
        assert_eq!(loaded.config.shutdown.on_fatal, FatalAction::Reboot);
    }

    #[test]
    fn services_sysctls_rlimits_and_resources_parse() {
        let config = parse(
            "[berthd]\nstop_timeout_secs = 20\n[berthd.resources]\nmemory_min = \"64M\"\ncpu_weight = 500\n\
             [sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[rlimits]\nnofile = { soft = 4096, hard = 8192 }\n\
             [[service]]\nname = \"a\"\npath = \"/a\"\nrestart = \"never\"\nstop_timeout_secs = 2\n\
             [service.resources]\npids_max = 10\n",
        )
        .unwrap();
        assert_eq!(config.berthd.stop_timeout_secs, Some(20));
        assert_eq!(
            config.berthd.resources.memory_min,
            Some(crate::cgroup::resources::Size(64 << 20))
        );
        assert_eq!(config.sysctl.0["net.ipv4.ip_forward"], "1");
        assert_eq!(
            config.rlimits["nofile"].hard,
            crate::rlimit::Limit::Value(8192)
        );
        let s = &config.services[0];
        assert_eq!(
            (s.restart, s.stop_timeout_secs),
            (crate::supervisor::RestartPolicy::Never, Some(2))
        );
        assert!(s.resources.pids_max.is_some());
    }

    #[test]
    fn bad_resource_values_name_line_and_key() {
        let err = parse("[berthd]\npath = \"/x\"\n[berthd.resources]\nmemory_max = \"lots\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "/etc/berth/init.toml:4: key berthd.resources.memory_max: invalid size \"lots\""
            ),
            "{err}"
        );
        let err = parse("[[service]]\nname = \"a\"\npath = \"/a\"\nrestart = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "/etc/berth/init.toml:4: key service[0].restart: unknown variant `sometimes`"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_bad_key_costs_only_that_key() {
        let text = "[console]\nlevel = \"debug\"\n[berthd]\nmax_failures = -1\nbackoff_max_ms = 100\nbogus = 1\n\
[[service]]\nname = \"a\"\npath = \"/a\"\n[[service]]\nname = \"b\"\n";
        let loaded = layers(Some(text), "");
        let c = &loaded.config;
        assert_eq!(c.console.level, Level::Debug);
        assert_eq!(c.berthd.max_failures, BerthdConfig::default().max_failures);
        assert_eq!(c.berthd.backoff_max_ms, 100);
        assert_eq!(c.services.len(), 1, "the service without a path is dropped");
        let lines: Vec<String> = loaded
            .file_errors
            .iter()
            .map(|e| format!("{e}; {}", e.consequence()))
            .collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(
            lines[0].contains("init.toml:4: key berthd.max_failures: invalid value: integer `-1`"),
            "{lines:#?}"
        );
        assert!(
            lines[0].ends_with("key ignored, using the default or an earlier layer's value"),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("init.toml:6: key berthd.bogus: unknown field `bogus`")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("init.toml:10: key service[1]: missing field `path`")),
            "{lines:#?}"
        );
    }

    #[test]
    fn syntax_error_skips_the_file() {
        let loaded = layers(
            Some("[berthd]\nmax_failures = 3\nthis is not toml\n"),
            "berth.console.level=warn",
        );
        assert_eq!(
            loaded.config,
            Config {
                console: ConsoleConfig { level: Level::Warn },
                ..Config::default()
            }
        );
        assert_eq!(loaded.file_errors.len(), 1);
        assert!(loaded.file_errors[0]
            .consequence()
            .starts_with("file ignored"));
    }

    #[test]
    fn node_file_layers_over_the_image_file() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("init.toml");
        let node = dir.path().join("node.toml");
        std::fs::write(&image, "[berthd]\nmax_failures = 3\nbackoff_max_ms = 100\n[[service]]\nname = \"a\"\npath = \"/a\"\n").unwrap();
        std::fs::write(&node, "[berthd]\nmax_failures = 7\nbackoff_initial_ms = \"soon\"\n[[service]]\nname = \"b\"\npath = \"/b\"\n").unwrap();
        let loaded = Config::load_layers(&[&image, &node], "berth.berthd.backoff_max_ms=50");
        let c = &loaded.config;
        assert_eq!(c.berthd.max_failures, 7);
        assert_eq!(c.berthd.backoff_max_ms, 50);
        assert_eq!(
            c.berthd.backoff_initial_ms,
            BerthdConfig::default().backoff_initial_ms
        );
        assert_eq!(
            c.services
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(loaded.file_errors.len(), 1);
        assert!(
            loaded.file_errors[0]
                .to_string()
                .contains("node.toml:3: key berthd.backoff_initial_ms"),
            "{}",
            loaded.file_errors[0]
        );
    }

    fn dotted_keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => dotted_keys(&path, t, out),
                // `[[service]]` entries are checked from a sample entry below.
                toml::Value::Array(_) if path == "service" => {}
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn every_key_is_documented() {
        let docs = include_str!("../../docs/init-config.md");
        let mut keys = Vec::new();
        dotted_keys(
            "",
            &toml::Table::try_from(Config::default()).unwrap(),
            &mut keys,
        );
        let service: ServiceConfig = toml::from_str("name = \"x\"\npath = \"/x\"").unwrap();
        dotted_keys(
            "service",
            &toml::Table::try_from(service).unwrap(),
            &mut keys,
        );
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !docs.contains(&format!("`{k}`")))
            .collect();
        assert!(
            missing.is_empty(),
            "keys missing from docs/init-config.md: {missing:?}"
        );
    }
}
