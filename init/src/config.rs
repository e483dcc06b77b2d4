//! `/etc/berth/init.toml`: init's configuration.
//!
//! Layers, later wins: the built-in defaults ([`Config::default`], equal to
//! `configs/init.toml` without its `[[service]]` entries) and then the file, key by key (a
//! file that sets only `[berthd] max_failures` keeps every other default). An invalid file
//! (TOML syntax, unknown key, wrong type) is reported as one line naming the file, the line
//! and the key, and the node comes up on the built-in defaults rather than hanging.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::console::Level;

/// Where stage 2 reads its configuration.
pub const DEFAULT_PATH: &str = "/etc/berth/init.toml";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FatalAction {
    /// Power the machine off.
    Poweroff,
    /// Reboot.
    Reboot,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
    /// `[[service]]`: extra supervised services.
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// `error`, `warn`, `info` or `debug`.
    pub level: Level,
}

/// `[modules]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModulesConfig {
    /// Modules to load (with their dependencies) from `/lib/modules/<kver>/`, in order.
    /// Built-in or already loaded modules are fine.
    pub load: Vec<String>,
}

/// `[berthd]`: the engine, started and supervised by init.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BerthdConfig {
    /// The executable.
    pub path: PathBuf,
    /// Its arguments (after argv[0]).
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
}

/// `[bridge]`: the virtio-serial port bridged to berthd's socket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// The virtio-serial port name (`/sys/class/virtio-ports/*/name`); empty disables the bridge.
    pub port: String,
    /// How long to wait for the port to appear after loading virtio_console.
    pub wait_secs: u64,
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Name used on the console and in messages.
    pub name: String,
    /// The executable.
    pub path: PathBuf,
    /// Its arguments (after argv[0]).
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
            load: ["virtio_pci", "virtio_console", "virtio_net", "virtio_blk", "overlay"]
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
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self { port: "org.berth.api".into(), wait_secs: 5 }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { timeout_secs: 10, on_fatal: FatalAction::Poweroff, power_button: true }
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
            services: Vec::new(),
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
            let message = if key.is_none() { format!("invalid TOML: {message}") } else { message };
            ConfigError::Invalid { path: path.to_path_buf(), line, key, message }
        })
    }

    /// Reads `path`. A missing file means the built-in defaults; any other problem is
    /// returned together with the defaults so the caller can report it and go on.
    pub fn load(path: &Path) -> (Self, Option<ConfigError>) {
        match std::fs::read_to_string(path) {
            Ok(text) => match Self::parse(path, &text) {
                Ok(config) => (config, None),
                Err(err) => (Self::default(), Some(err)),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (Self::default(), None),
            Err(source) => (Self::default(), Some(ConfigError::Read { path: path.to_path_buf(), source })),
        }
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
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
        assert_eq!(Config { services: Vec::new(), ..config }, Config::default());
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
        assert!(msg.starts_with("/etc/berth/init.toml:3: key berthd.max_failure: unknown field `max_failure`"), "{msg}");
    }

    #[test]
    fn unknown_table_is_reported() {
        let err = parse("[console]\nlevel = \"info\"\n[bogus]\nx = 1\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/berth/init.toml:3: key bogus: unknown field `bogus`"), "{msg}");
    }

    #[test]
    fn bad_enum_value_is_reported() {
        let err = parse("[shutdown]\non_fatal = \"explode\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/berth/init.toml:2: key shutdown.on_fatal: unknown variant `explode`"), "{msg}");
    }

    #[test]
    fn error_in_service_array_names_index() {
        let err = parse("[[service]]\nname = \"a\"\npath = \"/a\"\n[[service]]\nname = \"b\"\npath = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/berth/init.toml:6: key service[1].path: invalid type: integer `5`"), "{msg}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = parse("[console]\nlevel = \"info\"\nthis is not toml\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/berth/init.toml:3: invalid TOML: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn missing_file_is_defaults_without_error() {
        let (config, err) = Config::load(Path::new("/nonexistent/init.toml"));
        assert_eq!(config, Config::default());
        assert!(err.is_none());
    }

    #[test]
    fn bad_file_falls_back_to_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.toml");
        std::fs::write(&path, "[berthd]\nmax_failures = -1\n").unwrap();
        let (config, err) = Config::load(&path);
        assert_eq!(config, Config::default());
        assert!(err.unwrap().to_string().contains(":2: key berthd.max_failures: "));
    }
}
