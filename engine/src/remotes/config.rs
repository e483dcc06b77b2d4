//! berthd's registry settings, `[plugins."berth.registry.v1"]`, and the live handle a pull
//! asks for endpoints and credentials.
//!
//! ```toml
//! [plugins."berth.registry.v1"]
//! config_path = "/var/etc/berth/certs.d:/etc/berth/certs.d" # certs.d directories (hosts.rs),
//!                                                            # the first with a match wins
//! config_json = "/var/etc/berth/config.json" # docker-style credentials, read on each lookup
//! [plugins."berth.registry.v1".auths."10.0.2.2:5000"]
//! username = "edge"
//! password = "secret"                         # or auth = base64("user:pass"), identitytoken
//! ```
//!
//! The older inline form, containerd CRI's `mirrors` table, is still accepted with a
//! deprecation warning: `[plugins."berth.registry.v1".mirrors."docker.io"] endpoint = [...]`,
//! `"*"` for any registry without its own entry. Like containerd it cannot be combined with
//! `config_path`.
//!
//! [`LiveRegistry`] holds the settings in force; a reload swaps them atomically, and every
//! pull calls [`LiveRegistry::endpoints_for`] at its start, so it sees the current settings and
//! the current contents of the hosts directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use serde::Deserialize;

use super::hosts::{self, is_localhost, HostsError, DOCKER_HUB, DOCKER_HUB_HOST};
use super::{Capabilities, RegistryHost, Scheme};

/// The plugin section holding the registry settings.
pub const PLUGIN: &str = "berth.registry.v1";
/// The wildcard entry of the deprecated `mirrors` table.
pub const ANY_REGISTRY: &str = "*";

/// Errors in the registry settings or the credentials they point at.
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    /// A key of `[plugins."berth.registry.v1"]` is unknown or has a wrong type or value.
    #[error("{}: [plugins.\"{PLUGIN}\"] {key}: {message}", location(path, *line))]
    Invalid {
        /// The config file that set the key (the main file when unknown).
        path: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },
    /// Host resolution failed (a bad hosts.toml, a bad registry name).
    #[error(transparent)]
    Hosts(#[from] HostsError),
    /// The docker-style credentials file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    ReadCredentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The docker-style credentials file is not valid.
    #[error("{}: {message}", path.display())]
    BadCredentials { path: PathBuf, message: String },
}

fn location(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{}:{l}", path.display()),
        None => path.display().to_string(),
    }
}

/// Credentials for one registry host, as `auths` or `config.json` give them.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`, as docker writes it.
    pub auth: Option<String>,
    /// An OAuth2 refresh token for the registry's token server.
    pub identitytoken: Option<String>,
}

impl std::fmt::Debug for AuthConfig {
    /// Never prints secrets (config dumps, logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth.as_ref().map(|_| "<redacted>"))
            .field(
                "identitytoken",
                &self.identitytoken.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What a client sends to a registry (or its token server).
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP basic, or the username/password of a token request.
    Basic { username: String, password: String },
    /// An OAuth2 refresh token (`grant_type=refresh_token`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl AuthConfig {
    /// The credentials this entry stands for.
    fn credentials(&self) -> Result<Option<Credentials>, String> {
        if let Some(t) = &self.identitytoken {
            if !t.is_empty() {
                return Ok(Some(Credentials::IdentityToken(t.clone())));
            }
        }
        if let Some(a) = &self.auth {
            if !a.is_empty() {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(a.trim())
                    .map_err(|e| format!("auth is not base64: {e}"))?;
                let s = String::from_utf8(raw)
                    .map_err(|_| "auth is not UTF-8 once decoded".to_string())?;
                let (u, p) = s
                    .split_once(':')
                    .ok_or_else(|| "auth must encode \"username:password\"".to_string())?;
                return Ok(Some(Credentials::Basic {
                    username: u.to_string(),
                    password: p.to_string(),
                }));
            }
        }
        match (&self.username, &self.password) {
            (Some(u), p) if !u.is_empty() => Ok(Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone().unwrap_or_default(),
            })),
            _ => Ok(None),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorSection {
    endpoint: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Section {
    config_path: Option<String>,
    config_json: Option<String>,
    #[serde(default)]
    auths: BTreeMap<String, AuthConfig>,
    #[serde(default)]
    mirrors: BTreeMap<String, MirrorSection>,
}

/// The registry settings of one configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistryConfig {
    /// containerd's certs.d directories (`config_path`, `:`-separated as in containerd
    /// CRI), searched in order; empty: none, every registry is its own endpoint.
    pub config_path: Vec<PathBuf>,
    /// A docker-style `config.json` with `auths`, read on each credentials lookup.
    pub config_json: Option<PathBuf>,
    /// Credentials by registry host (`host[:port]`).
    pub auths: BTreeMap<String, AuthConfig>,
    /// Deprecated inline mirrors: registry (or `*`) → endpoint URLs in order.
    pub mirrors: BTreeMap<String, Vec<String>>,
}

impl RegistryConfig {
    /// Reads `[plugins."berth.registry.v1"]` of a loaded configuration; `sources` are the
    /// files it came from (to name the file and line of a bad key).
    pub fn from_plugins(
        plugins: &BTreeMap<String, toml::Value>,
        sources: &[PathBuf],
    ) -> Result<Self, RegistryConfigError> {
        let Some(value) = plugins.get(PLUGIN) else {
            return Ok(Self::default());
        };
        let section: Section = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let keys: Vec<String> = e
                .path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    _ => None,
                })
                .collect();
            let message = e.into_inner().message().trim().to_string();
            let mut keys = keys;
            if let Some(rest) = message.strip_prefix("unknown field `") {
                if let Some(f) = rest.split('`').next() {
                    if keys.last().map(String::as_str) != Some(f) {
                        keys.push(f.to_string());
                    }
                }
            }
            invalid(sources, &keys, message)
        })?;
        let abs = |key: &str, v: Option<String>| -> Result<Option<PathBuf>, RegistryConfigError> {
            match v {
                None => Ok(None),
                Some(s) if s.is_empty() => Ok(None),
                Some(s) if Path::new(&s).is_absolute() => Ok(Some(PathBuf::from(s))),
                Some(s) => Err(invalid(
                    sources,
                    &[key.to_string()],
                    format!("path {s:?} must be absolute"),
                )),
            }
        };
        let cfg = RegistryConfig {
            config_path: match section.config_path {
                None => Vec::new(),
                Some(s) => s
                    .split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| abs("config_path", Some(p.to_string())))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .flatten()
                    .collect(),
            },
            config_json: abs("config_json", section.config_json)?,
            auths: section.auths,
            mirrors: section
                .mirrors
                .into_iter()
                .map(|(k, v)| (k, v.endpoint))
                .collect(),
        };
        if !cfg.config_path.is_empty() && !cfg.mirrors.is_empty() {
            return Err(invalid(
                sources,
                &["mirrors".to_string()],
                "`mirrors` cannot be set when `config_path` is given; move the mirrors into \
                 <config_path>/<registry>/hosts.toml"
                    .to_string(),
            ));
        }
        for (host, a) in &cfg.auths {
            a.credentials()
                .map_err(|m| invalid(sources, &["auths".to_string(), host.clone()], m))?;
        }
        for (reg, endpoints) in &cfg.mirrors {
            for (i, e) in endpoints.iter().enumerate() {
                mirror_host(e).map_err(|m| {
                    invalid(
                        sources,
                        &[
                            "mirrors".to_string(),
                            reg.clone(),
                            "endpoint".to_string(),
                            i.to_string(),
                        ],
                        m,
                    )
                })?;
            }
        }
        Ok(cfg)
    }

    /// Warnings about deprecated settings, for the log and the reload report.
    pub fn warnings(&self) -> Vec<String> {
        if self.mirrors.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "[plugins.\"{PLUGIN}\"] mirrors is deprecated: use config_path with \
                 <registry>/hosts.toml (\"_default\" for \"*\") instead"
            )]
        }
    }

    /// The ordered endpoints a pull of an image from `registry` (`host[:port]` of the
    /// reference) uses. Reads the hosts directory on every call.
    pub fn endpoints_for(&self, registry: &str) -> Result<Vec<RegistryHost>, RegistryConfigError> {
        if self.config_path.is_empty() && !self.mirrors.is_empty() {
            return self.mirror_endpoints(registry);
        }
        let roots: Vec<&Path> = self.config_path.iter().map(PathBuf::as_path).collect();
        Ok(hosts::resolve_in(&roots, registry)?)
    }

    /// containerd CRI's `registryEndpoints` + `registryHosts`: the registry's mirror list (or
    /// `*`'s), then the registry itself over https unless a mirror already is it; all with
    /// pull and resolve.
    fn mirror_endpoints(&self, registry: &str) -> Result<Vec<RegistryHost>, RegistryConfigError> {
        // check the name the same way the hosts path does
        hosts::resolve(None, registry)?;
        let list = self
            .mirrors
            .get(registry)
            .or_else(|| self.mirrors.get(ANY_REGISTRY))
            .cloned()
            .unwrap_or_default();
        let default_host = if registry == DOCKER_HUB {
            DOCKER_HUB_HOST
        } else {
            registry
        };
        let mut out = Vec::new();
        let mut has_default = false;
        for e in &list {
            let (scheme, host, path) = mirror_host(e).expect("endpoints were checked when loaded");
            has_default |= host == registry;
            out.push(self.mirror_entry(registry, scheme, host, path));
        }
        if !has_default {
            out.push(self.mirror_entry(
                registry,
                Scheme::Https,
                default_host.to_string(),
                "/v2".to_string(),
            ));
        }
        Ok(out)
    }

    fn mirror_entry(
        &self,
        registry: &str,
        scheme: Scheme,
        host: String,
        path: String,
    ) -> RegistryHost {
        let is_proxy = host != registry && !(registry == DOCKER_HUB && host == DOCKER_HUB_HOST);
        RegistryHost {
            scheme,
            namespace: is_proxy.then(|| registry.to_string()),
            host,
            path,
            capabilities: Capabilities::PULL_RESOLVE,
            tls: Default::default(),
            headers: Vec::new(),
            override_path: false,
            dial_timeout: None,
            source: None,
        }
    }

    /// Credentials for the endpoint host `host` (`host[:port]`): `auths` first, then the
    /// docker-style `config.json` (read now, so edits apply without a reload).
    pub fn credentials_for(&self, host: &str) -> Result<Option<Credentials>, RegistryConfigError> {
        let names = host_aliases(host);
        for n in &names {
            if let Some(a) = self.auths.get(n.as_str()) {
                // Checked when the configuration was loaded.
                return Ok(a.credentials().unwrap_or(None));
            }
        }
        let Some(path) = &self.config_json else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RegistryConfigError::ReadCredentials {
                    path: path.clone(),
                    source,
                })
            }
        };
        #[derive(Deserialize)]
        struct DockerConfig {
            #[serde(default)]
            auths: BTreeMap<String, DockerAuth>,
        }
        #[derive(Deserialize)]
        struct DockerAuth {
            username: Option<String>,
            password: Option<String>,
            auth: Option<String>,
            identitytoken: Option<String>,
        }
        let bad = |message: String| RegistryConfigError::BadCredentials {
            path: path.clone(),
            message,
        };
        let cfg: DockerConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for (key, a) in cfg.auths {
            if names.contains(&docker_key_host(&key)) {
                let a = AuthConfig {
                    username: a.username,
                    password: a.password,
                    auth: a.auth,
                    identitytoken: a.identitytoken,
                };
                return a
                    .credentials()
                    .map_err(|m| bad(format!("auths.{key:?}: {m}")));
            }
        }
        Ok(None)
    }
}

/// Names a host's credentials may be stored under (Docker Hub has three).
fn host_aliases(host: &str) -> Vec<String> {
    if host == DOCKER_HUB || host == DOCKER_HUB_HOST || host == "index.docker.io" {
        vec![
            host.to_string(),
            DOCKER_HUB.to_string(),
            DOCKER_HUB_HOST.to_string(),
            "index.docker.io".to_string(),
        ]
    } else {
        vec![host.to_string()]
    }
}

/// A docker `config.json` key (`https://index.docker.io/v1/`, `host:port`) → `host[:port]`.
fn docker_key_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

/// One deprecated mirror endpoint → (scheme, host, path). containerd CRI's
/// `addDefaultScheme`: no scheme means http for localhost and https otherwise; an empty
/// path means `/v2`, any other path is used as given.
fn mirror_host(endpoint: &str) -> Result<(Scheme, String, String), String> {
    let (scheme, rest) = if let Some(r) = endpoint.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = endpoint.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if endpoint.contains("://") {
        return Err(format!(
            "{endpoint:?}: unsupported scheme (expected http:// or https://)"
        ));
    } else {
        let host = endpoint.split('/').next().unwrap_or(endpoint);
        if is_localhost(host) {
            (Scheme::Http, endpoint)
        } else {
            (Scheme::Https, endpoint)
        }
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['?', '#', '@']) || host.contains(char::is_whitespace) {
        return Err(format!(
            "{endpoint:?}: expected [http[s]://]host[:port][/path]"
        ));
    }
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/v2" } else { path };
    Ok((scheme, host.to_string(), path.to_string()))
}

/// An [`RegistryConfigError::Invalid`] for `keys` under the plugin section, located in the
/// last of `sources` that sets the deepest of them (later files win, as in config.rs).
fn invalid(sources: &[PathBuf], keys: &[String], message: String) -> RegistryConfigError {
    let mut full = vec!["plugins".to_string(), PLUGIN.to_string()];
    full.extend(keys.iter().cloned());
    let mut found = None;
    for src in sources.iter().rev() {
        if let Some(line) = locate(src, &full) {
            found = Some((src.clone(), Some(line)));
            break;
        }
    }
    let (path, line) = found.unwrap_or_else(|| {
        (
            sources
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("(built-in defaults)")),
            None,
        )
    });
    let key = keys
        .iter()
        .map(|k| {
            if k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                k.clone()
            } else {
                format!("{k:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".");
    RegistryConfigError::Invalid {
        path,
        line,
        key,
        message,
    }
}

/// The line of the deepest of `keys` that `file` sets, if it sets the first two.
fn locate(file: &Path, keys: &[String]) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    let doc = toml_edit::ImDocument::parse(text.as_str()).ok()?;
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    let mut span = None;
    let mut found = 0;
    for (depth, k) in keys.iter().enumerate() {
        let Some((key, item)) = table.get_key_value(k) else {
            break;
        };
        found = depth + 1;
        span = key.span().or_else(|| item.span()).or(span);
        match item {
            toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
                // An index into an array: the element's own span.
                if let Some(i) = keys.get(depth + 1).and_then(|i| i.parse::<usize>().ok()) {
                    span = a.get(i).and_then(|v| v.span()).or(span);
                }
                break;
            }
            _ => match item.as_table_like() {
                Some(t) => table = t,
                None => break,
            },
        }
    }
    // A file that does not set this plugin section is not the one to blame.
    if found < 2 {
        return None;
    }
    let span = span?;
    Some(text[..span.start.min(text.len())].matches('\n').count() + 1)
}

/// The registry settings in force, shared by the reload path (which swaps them) and every
/// pull (which reads them at its start). Cloning shares the same settings.
#[derive(Debug, Clone, Default)]
pub struct LiveRegistry(Arc<RwLock<Arc<RegistryConfig>>>);

impl LiveRegistry {
    /// Starts with `cfg`.
    pub fn new(cfg: RegistryConfig) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(cfg))))
    }

    /// The settings in force now (a snapshot; a reload does not change it under the caller).
    pub fn current(&self) -> Arc<RegistryConfig> {
        // A panic while holding the lock cannot leave the Arc half-written; keep serving.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `cfg` in force for every later call.
    pub fn replace(&self, cfg: RegistryConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }

    /// [`RegistryConfig::endpoints_for`] with the settings in force.
    pub fn endpoints_for(&self, registry: &str) -> Result<Vec<RegistryHost>, RegistryConfigError> {
        self.current().endpoints_for(registry)
    }

    /// [`RegistryConfig::credentials_for`] with the settings in force.
    pub fn credentials_for(&self, host: &str) -> Result<Option<Credentials>, RegistryConfigError> {
        self.current().credentials_for(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(
        text: &str,
    ) -> (
        tempfile::TempDir,
        Result<RegistryConfig, RegistryConfigError>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("berthd.toml");
        std::fs::write(&p, text).unwrap();
        let c = Config::load(&p).unwrap();
        let r = RegistryConfig::from_plugins(&c.plugins, &c.sources);
        (dir, r)
    }

    fn urls(h: &[RegistryHost]) -> Vec<String> {
        h.iter()
            .map(|h| match &h.namespace {
                Some(ns) => format!("{}?ns={ns}", h.base_url()),
                None => h.base_url(),
            })
            .collect()
    }

    #[test]
    fn config_path_and_auths() {
        let (dir, r) = load(
            "[plugins.\"berth.registry.v1\"]\nconfig_path = \"/nonexistent/certs.d\"\n\
             [plugins.\"berth.registry.v1\".auths.\"10.0.2.2:5000\"]\nusername = \"u\"\npassword = \"p\"\n\
             [plugins.\"berth.registry.v1\".auths.\"b.example\"]\nauth = \"dTI6cDI=\"\n",
        );
        drop(dir);
        let r = r.unwrap();
        assert_eq!(r.config_path, vec![PathBuf::from("/nonexistent/certs.d")]);
        assert_eq!(
            r.credentials_for("10.0.2.2:5000").unwrap(),
            Some(Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            r.credentials_for("b.example").unwrap(),
            Some(Credentials::Basic {
                username: "u2".into(),
                password: "p2".into()
            })
        );
        assert_eq!(r.credentials_for("c.example").unwrap(), None);
        assert_eq!(
            urls(&r.endpoints_for("docker.io").unwrap()),
            vec!["https://registry-1.docker.io/v2"]
        );
    }

    #[test]
    fn docker_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let j = dir.path().join("config.json");
        std::fs::write(
            &j,
            r#"{"auths": {"https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                          "reg.example:5000": {"identitytoken": "tok"}}}"#,
        )
        .unwrap();
        let r = RegistryConfig {
            config_json: Some(j.clone()),
            ..Default::default()
        };
        assert_eq!(
            r.credentials_for("registry-1.docker.io").unwrap(),
            Some(Credentials::Basic {
                username: "hub".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            r.credentials_for("reg.example:5000").unwrap(),
            Some(Credentials::IdentityToken("tok".into()))
        );
        std::fs::write(&j, "{\n \"auths\": 5\n}").unwrap();
        let e = r.credentials_for("x").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: invalid type", j.display()))
                && e.ends_with("line 2 column 11"),
            "{e}"
        );
    }

    /// containerd CRI's mirrors: the registry's list, else "*", then the upstream over https
    /// unless listed; all pull+resolve; ns for the mirrors.
    #[test]
    fn deprecated_mirrors_with_wildcard() {
        let (_d, r) = load(
            "[plugins.\"berth.registry.v1\".mirrors.\"docker.io\"]\nendpoint = [\"http://10.0.2.2:5000\", \"https://m2.example/prefix\"]\n\
             [plugins.\"berth.registry.v1\".mirrors.\"*\"]\nendpoint = [\"localhost:5000\"]\n\
             [plugins.\"berth.registry.v1\".mirrors.\"own.example\"]\nendpoint = [\"https://own.example\"]\n",
        );
        let r = r.unwrap();
        assert_eq!(r.warnings().len(), 1);
        assert_eq!(
            urls(&r.endpoints_for("docker.io").unwrap()),
            vec![
                "http://10.0.2.2:5000/v2?ns=docker.io",
                "https://m2.example/prefix?ns=docker.io",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert_eq!(
            urls(&r.endpoints_for("quay.io").unwrap()),
            vec!["http://localhost:5000/v2?ns=quay.io", "https://quay.io/v2"]
        );
        assert_eq!(
            urls(&r.endpoints_for("own.example").unwrap()),
            vec!["https://own.example/v2"]
        );
        assert!(r
            .endpoints_for("quay.io")
            .unwrap()
            .iter()
            .all(|h| h.capabilities == Capabilities::PULL_RESOLVE));
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let (d, r) = load("version = 1\n[plugins.\"berth.registry.v1\"]\nconfig_path = \"/x\"\nconfg_json = \"/y\"\n");
        let f = d.path().join("berthd.toml").display().to_string();
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("{f}:4: [plugins.\"berth.registry.v1\"] confg_json: unknown field `confg_json`, expected one of `config_path`, `config_json`, `auths`, `mirrors`")
        );
        let (d, r) = load("[plugins.\"berth.registry.v1\"]\nconfig_path = \"certs.d\"\n");
        let f = d.path().join("berthd.toml").display().to_string();
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("{f}:2: [plugins.\"berth.registry.v1\"] config_path: path \"certs.d\" must be absolute")
        );
        let (d, r) = load("[plugins.\"berth.registry.v1\".mirrors.\"docker.io\"]\nendpoint = [\"https://ok\",\n  \"ftp://bad\"]\n");
        let f = d.path().join("berthd.toml").display().to_string();
        assert_eq!(
            r.unwrap_err().to_string(),
            format!("{f}:3: [plugins.\"berth.registry.v1\"] mirrors.\"docker.io\".endpoint.1: \"ftp://bad\": unsupported scheme (expected http:// or https://)")
        );
        let (_d, r) = load("[plugins.\"berth.registry.v1\"]\nconfig_path = \"/c\"\n[plugins.\"berth.registry.v1\".mirrors.\"*\"]\nendpoint = []\n");
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("`mirrors` cannot be set when `config_path` is given"));
        let (_d, r) = load("[plugins.\"berth.registry.v1\".auths.\"h\"]\nauth = \"!!\"\n");
        assert!(r.unwrap_err().to_string().contains("auth is not base64"));
    }

    #[test]
    fn live_handle_swaps() {
        let live = LiveRegistry::new(RegistryConfig::default());
        let before = live.current();
        live.replace(RegistryConfig {
            mirrors: [("*".to_string(), vec!["http://m:1".to_string()])].into(),
            ..Default::default()
        });
        assert_eq!(
            urls(&before.endpoints_for("a.example").unwrap()),
            vec!["https://a.example/v2"]
        );
        assert_eq!(
            urls(&live.endpoints_for("a.example").unwrap()),
            vec!["http://m:1/v2?ns=a.example", "https://a.example/v2"]
        );
    }

    /// The shipped configs/berthd.toml and configs/certs.d parse, and the commented
    /// `_default` example changes nothing: pulls go to the registry itself.
    #[test]
    fn shipped_configs_change_nothing() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let c = Config::load(&configs.join("berthd.toml")).unwrap();
        let r = RegistryConfig::from_plugins(&c.plugins, &c.sources).unwrap();
        assert_eq!(
            r.config_path,
            vec![
                PathBuf::from("/var/etc/berth/certs.d"),
                PathBuf::from("/etc/berth/certs.d")
            ]
        );
        let hosts = hosts::resolve(Some(&configs.join("certs.d")), "docker.io").unwrap();
        assert_eq!(urls(&hosts), vec!["https://registry-1.docker.io/v2"]);
        let hosts = hosts::resolve(Some(&configs.join("certs.d")), "10.0.2.2:5000").unwrap();
        assert_eq!(urls(&hosts), vec!["https://10.0.2.2:5000/v2"]);
    }

    /// containerd CRI's `config_path = "a:b"`: the first root with a matching directory
    /// (its `_default` included) wins.
    #[test]
    fn several_config_paths_first_match_wins() {
        let node = tempfile::tempdir().unwrap();
        let image = tempfile::tempdir().unwrap();
        let put = |root: &Path, d: &str, server: &str| {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(
                root.join(d).join("hosts.toml"),
                format!("server = \"{server}\"\n"),
            )
            .unwrap();
        };
        put(image.path(), "_default", "https://image-default");
        put(image.path(), "quay.io", "https://image-quay");
        put(node.path(), "ghcr.io", "https://node-ghcr");
        let (_d, r) = load(&format!(
            "[plugins.\"berth.registry.v1\"]\nconfig_path = \"{}:{}\"\n",
            node.path().display(),
            image.path().display()
        ));
        let r = r.unwrap();
        let first = |reg: &str| r.endpoints_for(reg).unwrap()[0].base_url();
        assert_eq!(first("ghcr.io"), "https://node-ghcr/v2");
        assert_eq!(first("quay.io"), "https://image-quay/v2");
        assert_eq!(first("docker.io"), "https://image-default/v2");
        put(node.path(), "_default", "https://node-default");
        assert_eq!(first("quay.io"), "https://node-default/v2");
        let (_d, r) = load("[plugins.\"berth.registry.v1\"]\nconfig_path = \"/a:b\"\n");
        assert!(r
            .unwrap_err()
            .to_string()
            .ends_with("config_path: path \"b\" must be absolute"));
    }
}
