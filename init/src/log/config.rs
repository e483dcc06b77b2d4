//! `[log]` in `init.toml`: ring size, the optional rotated file, optional forwarding.
//!
//! The schema (types) is checked by serde with the rest of the file; the values are checked
//! here, each error naming its key, and a bad value falls back to that key's safe default
//! (file or forwarding off) rather than throwing away the whole file.

use serde::{Deserialize, Serialize};

use super::record::Severity;

/// Smallest accepted ring (a few dozen records).
pub const MIN_RING_BYTES: u64 = 16 * 1024;
/// Largest accepted ring: init's memory is the node's.
pub const MAX_RING_BYTES: u64 = 64 * 1024 * 1024;
/// Smallest accepted file size before rotation.
pub const MIN_FILE_BYTES: u64 = 4096;
/// Most rotated copies kept.
pub const MAX_KEEP: u32 = 100;

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Byte budget of the in-memory ring (all inputs; oldest records go first).
    pub ring_bytes: u64,
    /// `[log.file]`.
    pub file: FileConfig,
    /// `[log.forward]`.
    pub forward: ForwardConfig,
}

/// `[log.file]`: a size-capped, rotated copy of the log under `/var/log`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// Absolute path; `""` disables the file. Opened once `/var` is writable.
    pub path: String,
    /// Size at which the file is rotated to `<path>.1`.
    pub max_bytes: u64,
    /// Rotated copies kept (`<path>.1` … `<path>.<keep>`); 0 keeps none.
    pub keep: u32,
    /// Records less severe than this are not written.
    pub min_severity: Severity,
}

/// `[log.forward]`: send records to a remote syslog server (RFC 5424).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// `udp://host:port` or `tcp://host:port`; `""` disables forwarding.
    pub address: String,
    /// Records less severe than this are not forwarded.
    pub min_severity: Severity,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            ring_bytes: 256 * 1024,
            file: FileConfig::default(),
            forward: ForwardConfig::default(),
        }
    }
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: "/var/log/berth/messages".into(),
            max_bytes: 1024 * 1024,
            keep: 3,
            min_severity: Severity::Info,
        }
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            min_severity: Severity::Info,
        }
    }
}

/// Transport of a forwarding address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram per record (RFC 5426).
    Udp,
    /// A stream with octet-counting framing (RFC 6587 section 3.4.1).
    Tcp,
}

/// A parsed `forward.address`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// UDP or TCP.
    pub transport: Transport,
    /// `host:port`, resolved at each (re)connect since DNS may come up after init.
    pub host_port: String,
}

/// An invalid `[log]` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key log.{key} = {value:?}: {problem}; {fallback}")]
pub struct LogConfigError {
    /// Dotted key under `[log]`.
    pub key: &'static str,
    /// The value as configured.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// What happens instead.
    pub fallback: &'static str,
}

/// Parses `udp://host:port` / `tcp://host:port`.
pub fn parse_target(address: &str) -> Result<Target, String> {
    let (transport, rest) = if let Some(rest) = address.strip_prefix("udp://") {
        (Transport::Udp, rest)
    } else if let Some(rest) = address.strip_prefix("tcp://") {
        (Transport::Tcp, rest)
    } else {
        return Err("expected udp://host:port or tcp://host:port".into());
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("missing :port".into());
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("missing host".into());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("port {port:?}: expected 1..65535")),
    }
    Ok(Target {
        transport,
        host_port: rest.to_string(),
    })
}

impl LogConfig {
    /// The configuration to run with, each invalid value replaced by its fallback, and one
    /// error per replaced value.
    pub fn validated(&self) -> (LogConfig, Option<Target>, Vec<LogConfigError>) {
        let mut config = self.clone();
        let mut errors = Vec::new();
        if !(MIN_RING_BYTES..=MAX_RING_BYTES).contains(&self.ring_bytes) {
            config.ring_bytes = LogConfig::default().ring_bytes;
            errors.push(LogConfigError {
                key: "ring_bytes",
                value: self.ring_bytes.to_string(),
                problem: format!("must be between {MIN_RING_BYTES} and {MAX_RING_BYTES}"),
                fallback: "using 262144",
            });
        }
        let file_off = "log file disabled";
        if !self.file.path.is_empty() && !self.file.path.starts_with('/') {
            errors.push(LogConfigError {
                key: "file.path",
                value: self.file.path.clone(),
                problem: "must be an absolute path".into(),
                fallback: file_off,
            });
            config.file.path.clear();
        }
        if !self.file.path.is_empty() && self.file.max_bytes < MIN_FILE_BYTES {
            errors.push(LogConfigError {
                key: "file.max_bytes",
                value: self.file.max_bytes.to_string(),
                problem: format!("must be at least {MIN_FILE_BYTES}"),
                fallback: file_off,
            });
            config.file.path.clear();
        }
        if !self.file.path.is_empty() && self.file.keep > MAX_KEEP {
            errors.push(LogConfigError {
                key: "file.keep",
                value: self.file.keep.to_string(),
                problem: format!("must be at most {MAX_KEEP}"),
                fallback: file_off,
            });
            config.file.path.clear();
        }
        let target = if self.forward.address.is_empty() {
            None
        } else {
            match parse_target(&self.forward.address) {
                Ok(t) => Some(t),
                Err(problem) => {
                    errors.push(LogConfigError {
                        key: "forward.address",
                        value: self.forward.address.clone(),
                        problem,
                        fallback: "forwarding disabled",
                    });
                    config.forward.address.clear();
                    None
                }
            }
        };
        (config, target, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let (config, target, errors) = LogConfig::default().validated();
        assert_eq!(config, LogConfig::default());
        assert!(target.is_none() && errors.is_empty());
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("udp://10.0.2.2:514").unwrap(),
            Target {
                transport: Transport::Udp,
                host_port: "10.0.2.2:514".into()
            }
        );
        assert_eq!(
            parse_target("tcp://logs.example:6514").unwrap().transport,
            Transport::Tcp
        );
        assert_eq!(
            parse_target("tcp://[::1]:514").unwrap().host_port,
            "[::1]:514"
        );
        assert_eq!(
            parse_target("10.0.2.2:514").unwrap_err(),
            "expected udp://host:port or tcp://host:port"
        );
        assert_eq!(parse_target("udp://10.0.2.2").unwrap_err(), "missing :port");
        assert_eq!(parse_target("udp://:514").unwrap_err(), "missing host");
        assert_eq!(
            parse_target("udp://h:0").unwrap_err(),
            "port \"0\": expected 1..65535"
        );
    }

    #[test]
    fn each_bad_value_names_its_key_and_falls_back() {
        let bad = LogConfig {
            ring_bytes: 10,
            file: FileConfig {
                path: "var/log/x".into(),
                ..FileConfig::default()
            },
            forward: ForwardConfig {
                address: "syslog.example:514".into(),
                ..ForwardConfig::default()
            },
        };
        let (config, target, errors) = bad.validated();
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "key log.ring_bytes = \"10\": must be between 16384 and 67108864; using 262144",
                "key log.file.path = \"var/log/x\": must be an absolute path; log file disabled",
                "key log.forward.address = \"syslog.example:514\": expected udp://host:port or tcp://host:port; forwarding disabled",
            ]
        );
        assert_eq!(config.ring_bytes, 262144);
        assert!(
            config.file.path.is_empty() && config.forward.address.is_empty() && target.is_none()
        );
    }

    #[test]
    fn keys_come_from_file_and_kernel_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.toml");
        std::fs::write(&path, "[log]\nring_bytes = 65536\n[log.file]\nkeep = 5\n").unwrap();
        let loaded = crate::config::Config::load_layers(
            &[path.as_path()],
            "berth.log.forward.address=udp://10.0.2.2:5514 berth.log.forward.min_severity=warn berth.log.file.path=",
        );
        assert!(
            loaded.file_errors.is_empty() && loaded.cmdline_errors.is_empty(),
            "{:?}",
            loaded.cmdline_errors
        );
        let log = loaded.config.log;
        assert_eq!(
            (log.ring_bytes, log.file.keep, log.file.path.as_str()),
            (65536, 5, "")
        );
        assert_eq!(log.forward.address, "udp://10.0.2.2:5514");
        assert_eq!(log.forward.min_severity, Severity::Warning);
        let bad = crate::config::Config::load_layers(
            &[path.as_path()],
            "berth.log.forward.min_severity=loud",
        );
        assert_eq!(bad.cmdline_errors.len(), 1);
        assert!(bad.cmdline_errors[0]
            .to_string()
            .contains("berth.log.forward.min_severity=loud"));
    }

    #[test]
    fn small_file_is_refused() {
        let bad = LogConfig {
            file: FileConfig {
                max_bytes: 10,
                ..FileConfig::default()
            },
            ..LogConfig::default()
        };
        let (config, _, errors) = bad.validated();
        assert_eq!(errors[0].key, "file.max_bytes");
        assert!(config.file.path.is_empty());
    }
}
