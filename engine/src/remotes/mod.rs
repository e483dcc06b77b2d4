//! Talking to OCI distribution registries: which endpoints a reference is fetched from
//! (`hosts`, containerd's `certs.d/<host>/hosts.toml` format) and fetching from them.
//!
//! [`RegistryHost`] is the meeting point: host resolution produces an ordered list of them for
//! one image reference, and the distribution client tries them in that order, falling back to
//! the next one on transport errors and 4xx/5xx answers. Nothing here lists or caches
//! endpoints across pulls: the hosts directory is read again on every resolve, so an edited
//! `hosts.toml` applies to the next pull without a restart.
//!
//! [`resolve`] answers which endpoints a reference would use (the Registry service's core),
//! and [`pull::Puller`] runs a pull with berthd's live settings (the Pull service's core).

pub mod auth;
pub mod client;
pub mod config;
pub mod hosts;
pub mod pull;
pub mod resolve;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

/// How an endpoint is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP (`server = "http://…"` or a `[host."http://…"]` entry).
    Http,
    /// HTTPS with rustls, verified against the image's CA bundle plus [`TlsSettings::ca_files`].
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// What an endpoint may be used for (containerd's `capabilities`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Capabilities {
    /// Fetch manifests by digest and blobs.
    pub pull: bool,
    /// Resolve a tag to a digest (`HEAD/GET /v2/<name>/manifests/<tag>`).
    pub resolve: bool,
    /// Push content.
    pub push: bool,
}

impl Capabilities {
    /// Pull and resolve: what a mirror usually gets.
    pub const PULL_RESOLVE: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: false,
    };
    /// All three: containerd's default when `capabilities` is not given.
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// TLS settings of one endpoint (`ca`, `client`, `skip_verify` in hosts.toml). Paths are
/// absolute: relative ones were resolved against the directory of the file that named them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// Extra CA certificates (PEM files) trusted for this endpoint, on top of the system bundle.
    pub ca_files: Vec<PathBuf>,
    /// Client certificates: (certificate PEM, key PEM). A `None` key means the key is in the
    /// certificate file.
    pub client_certs: Vec<(PathBuf, Option<PathBuf>)>,
    /// Do not verify the server's certificate chain or name.
    pub skip_verify: bool,
}

/// One endpoint a pull may use, in the order it should be tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host` or `host:port`, as dialled.
    pub host: String,
    /// Path prefix of the API, `/v2` unless `override_path` gave another one.
    pub path: String,
    /// What this endpoint may be used for.
    pub capabilities: Capabilities,
    /// TLS settings (ignored for plain HTTP).
    pub tls: TlsSettings,
    /// Extra request headers (name, values).
    pub headers: Vec<(String, Vec<String>)>,
    /// `override_path = true`: `path` is the full API root and is used as is.
    pub override_path: bool,
    /// The `?ns=<registry>` parameter added to every request, set when this endpoint's host
    /// differs from the registry the image reference names (containerd does the same so a
    /// mirror serving several registries can tell them apart).
    pub namespace: Option<String>,
    /// How long to wait for a connection before falling back to the next endpoint.
    pub dial_timeout: Option<Duration>,
    /// The hosts.toml this endpoint came from (None: built-in default), for messages.
    pub source: Option<PathBuf>,
}

impl RegistryHost {
    /// `scheme://host/path` without a trailing slash: the API root requests are made under.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.host,
            self.path.trim_end_matches('/')
        )
    }
}
