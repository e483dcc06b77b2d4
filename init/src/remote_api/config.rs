//! `[remote]` of init.toml: whether and how init runs the remote API listener, and the node's
//! credentials for it, validated while the file is parsed like every other key.
//!
//! Credentials (`ca`, `cert`, `key`) are each a path or the PEM text itself. Inline private
//! keys never appear in messages or `Debug` output: a [`Credential`] prints as its kind and
//! length.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroup::{CpuMax, MemoryMax, PidsMax, Resources};

/// Where the node's credentials live by default: on the state disk, written by
/// `berthctl node config put remote/…` or by an installer.
pub const DEFAULT_DIR: &str = "/var/etc/berth/remote";

/// `[remote] enabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Enabled {
    /// Listen when the node has its CA, certificate and key; say why not otherwise.
    Auto,
    /// Listen; missing credentials are an error line.
    On,
    /// Never listen.
    Off,
}

/// A CA certificate, certificate or key: a path, or inline PEM text.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum Credential {
    /// A file (absolute path).
    Path(PathBuf),
    /// The PEM text itself.
    Inline(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Path(p) => write!(f, "Path({})", p.display()),
            Self::Inline(text) => write!(f, "Inline(<{} bytes of PEM>)", text.len()),
        }
    }
}

impl TryFrom<String> for Credential {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.starts_with("-----BEGIN ") {
            if !trimmed.contains("-----END ") {
                return Err("inline PEM without its -----END line".into());
            }
            return Ok(Self::Inline(format!("{trimmed}\n")));
        }
        // Never quote the value: it may be key material pasted the wrong way.
        if text.is_empty() || !Path::new(&text).is_absolute() || text.contains('\n') {
            return Err("expected an absolute path or inline PEM (-----BEGIN …)".into());
        }
        Ok(Self::Path(PathBuf::from(text)))
    }
}

impl From<Credential> for String {
    fn from(c: Credential) -> String {
        match c {
            Credential::Path(p) => p.display().to_string(),
            Credential::Inline(text) => text,
        }
    }
}

/// A deny-list entry: a certificate serial in hex (any case, `:` allowed).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(pub String);

impl TryFrom<String> for Serial {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let hex: String = text.chars().filter(|c| *c != ':').collect();
        if hex.is_empty() || hex.len() > 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("{text:?} is not a hex certificate serial"));
        }
        Ok(Self(text))
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> String {
        s.0
    }
}

/// An IP address to listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListenIp(pub IpAddr);

impl TryFrom<String> for ListenIp {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(Self).map_err(|_| {
            format!("{text:?} is not an IP address (\"0.0.0.0\", \"::\", \"10.0.0.7\")")
        })
    }
}

impl From<ListenIp> for String {
    fn from(ip: ListenIp) -> String {
        ip.0.to_string()
    }
}

/// `[remote.limits]`: the listener's defences; unset keys keep berth-apid's defaults
/// (docs/remote-api.md, "Defences").
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// TLS handshake deadline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_timeout_secs: Option<u64>,
    /// Idle connections (no open call) are closed after this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// A frame must arrive whole within this once started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_timeout_secs: Option<u64>,
    /// Open connections at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Handshakes in progress at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_handshakes: Option<u64>,
    /// Open calls per connection at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams: Option<u64>,
}

/// `[remote]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteApiConfig {
    /// `auto` (listen when CA, certificate and key are there), `on` or `off`.
    pub enabled: Enabled,
    /// Address to listen on.
    pub address: ListenIp,
    /// TCP port.
    pub port: u16,
    /// The fleet CA's certificate: client certificates must chain to it.
    pub ca: Credential,
    /// This node's certificate (its names and addresses as SANs).
    pub cert: Credential,
    /// Its private key.
    pub key: Credential,
    /// Serials of revoked client certificates; a reload applies changes to open connections.
    pub deny_serials: Vec<Serial>,
    /// The listener executable (the multi-call binary's `berth-apid` applet).
    pub path: PathBuf,
    /// `[remote.resources]`: limits of `system.slice/berth-apid`.
    pub resources: Resources,
    /// `[remote.limits]`.
    pub limits: Limits,
}

impl Default for RemoteApiConfig {
    fn default() -> Self {
        let dir = Path::new(DEFAULT_DIR);
        Self {
            enabled: Enabled::Auto,
            address: ListenIp(IpAddr::from([0, 0, 0, 0])),
            port: berth_layout::ports::REMOTE_API,
            ca: Credential::Path(dir.join("ca.pem")),
            cert: Credential::Path(dir.join("node.pem")),
            key: Credential::Path(dir.join("node.key")),
            deny_serials: Vec::new(),
            path: PathBuf::from("/usr/bin/berth-apid"),
            resources: default_resources(),
            limits: Limits::default(),
        }
    }
}

/// The listener's cgroup by default: a ceiling well above what its own bounds allow (64 MiB
/// of requests in flight, 512 connections with their TLS buffers), and most of one CPU, so a
/// flood of handshakes cannot starve berthd and the containers.
pub fn default_resources() -> Resources {
    Resources {
        memory_max: Some(MemoryMax(crate::cgroup::Max::Value(128 << 20))),
        cpu_max: CpuMax::try_from("80000 100000".to_string()).ok(),
        pids_max: Some(PidsMax(crate::cgroup::Max::Value(64))),
        ..Resources::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        remote: RemoteApiConfig,
    }

    #[test]
    fn credentials_are_paths_or_pem_and_inline_keys_stay_out_of_messages() {
        let d: Doc = toml::from_str(
            "[remote]\nca = \"/etc/berth/remote/ca.pem\"\nkey = \"\"\"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\"\"\"\n",
        )
        .unwrap();
        assert_eq!(
            d.remote.ca,
            Credential::Path("/etc/berth/remote/ca.pem".into())
        );
        assert!(matches!(d.remote.key, Credential::Inline(_)));
        let shown = format!("{:?}", d.remote);
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        // init reports the parser's message, never its snippet of the line (Config::parse).
        let err = toml::from_str::<Doc>("[remote]\nkey = \"c2VjcmV0\"\n").unwrap_err();
        assert!(!err.message().contains("c2VjcmV0"), "{err}");
        assert!(err.message().contains("absolute path or inline PEM"));
    }

    #[test]
    fn serials_addresses_and_switches_are_checked() {
        let d: Doc = toml::from_str(
            "[remote]\nenabled = \"off\"\naddress = \"::\"\ndeny_serials = [\"0A:ff\", \"12\"]\n",
        )
        .unwrap();
        assert_eq!(d.remote.enabled, Enabled::Off);
        assert_eq!(d.remote.deny_serials.len(), 2);
        assert!(toml::from_str::<Doc>("[remote]\ndeny_serials = [\"xyz\"]\n").is_err());
        assert!(toml::from_str::<Doc>("[remote]\naddress = \"node-a\"\n").is_err());
        assert!(toml::from_str::<Doc>("[remote]\nenabled = \"maybe\"\n").is_err());
    }
}
