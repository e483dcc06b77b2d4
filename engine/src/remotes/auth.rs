//! Registry credentials and the distribution auth handshake.
//!
//! Credentials come from a docker-style `config.json` (`auths.<host>.auth`, or
//! `username`/`password`, or `identitytoken`) and from a map the daemon's configuration
//! supplies; the map wins. They are looked up by the host actually dialled (a mirror has its
//! own credentials), then, for Docker Hub endpoints, under docker's legacy key
//! `https://index.docker.io/v1/`.
//!
//! The handshake is the one the distribution spec and docker's token spec describe: a request
//! answered `401` with `WWW-Authenticate: Basic …` is retried with the credentials as HTTP
//! basic auth; `WWW-Authenticate: Bearer realm=…,service=…,scope=…` sends berth to the token
//! endpoint (`GET realm?service=…&scope=…`, with basic auth when there are credentials, or a
//! `POST` with `grant_type=refresh_token` for an identity token) and retries with the token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Credentials for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or a personal access token used as one).
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in docker's config.json), exchanged at the
    /// token endpoint.
    IdentityToken(String),
    /// A bearer token for the registry itself (CRI `AuthConfig.registry_token`), sent as it
    /// is in answer to a bearer challenge.
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(***)"),
            Credential::RegistryToken(_) => write!(f, "RegistryToken(***)"),
        }
    }
}

/// Errors reading credentials.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a docker config.json.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the `auths` key).
        reason: String,
    },
}

/// Credentials by registry host, and where each came from (for error messages).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    entries: HashMap<String, (Credential, String)>,
    /// Credentials a pull request brought (CRI `AuthConfig`), for the host it names (`""`:
    /// every host); they win over `entries` and live only as long as this pull.
    request: Option<(Credential, String)>,
}

/// The credentials of one pull request (CRI `AuthConfig`): never stored, never logged
/// (their `Debug` hides the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAuth {
    /// The credential.
    pub credential: Credential,
    /// The registry host it is for (`host[:port]`, a URL is reduced to its host); empty:
    /// every endpoint the pull dials, mirrors included.
    pub server_address: String,
}

impl RequestAuth {
    /// From CRI `AuthConfig`'s fields: the first set of identity token, registry token,
    /// username + password, `auth` (base64 of `user:password`); `Ok(None)` when none is.
    pub fn from_fields(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
        server_address: &str,
    ) -> Result<Option<Self>, String> {
        let credential = if !identity_token.is_empty() {
            Credential::IdentityToken(identity_token.to_owned())
        } else if !registry_token.is_empty() {
            Credential::RegistryToken(registry_token.to_owned())
        } else if !username.is_empty() || !password.is_empty() {
            Credential::Basic {
                username: username.to_owned(),
                password: password.to_owned(),
            }
        } else if !auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("auth: not base64: {e}"))?;
            let text = String::from_utf8(decoded).map_err(|_| "auth: not UTF-8".to_string())?;
            let (u, p) = text
                .split_once(':')
                .ok_or("auth: not base64 of user:password")?;
            Credential::Basic {
                username: u.to_owned(),
                password: p.to_owned(),
            }
        } else {
            return Ok(None);
        };
        Ok(Some(Self {
            credential,
            server_address: if server_address.is_empty() {
                String::new()
            } else {
                normalize_key(server_address)
            },
        }))
    }
}

/// Docker Hub's legacy key in config.json.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// `https://host/v1/` → `host`: config.json keys may be URLs.
fn normalize_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k).to_string()
}

impl Credentials {
    /// Credentials from a docker config.json (if `docker_config` is given and exists) and
    /// then from `map` (daemon configuration, keyed by host; it overrides the file).
    pub fn load(
        docker_config: Option<&Path>,
        map: &HashMap<String, Credential>,
    ) -> Result<Self, AuthError> {
        let mut out = Credentials::default();
        if let Some(path) = docker_config {
            match std::fs::read(path) {
                Ok(bytes) => out.add_docker_config(path, &bytes)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(AuthError::Read {
                        path: path.into(),
                        source,
                    })
                }
            }
        }
        for (host, cred) in map {
            out.entries.insert(
                normalize_key(host),
                (cred.clone(), "the berthd configuration".into()),
            );
        }
        Ok(out)
    }

    fn add_docker_config(&mut self, path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: HashMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            auth: Option<String>,
            #[serde(default)]
            username: Option<String>,
            #[serde(default)]
            password: Option<String>,
            #[serde(default)]
            identitytoken: Option<String>,
        }
        let invalid = |reason: String| AuthError::Invalid {
            path: path.into(),
            reason,
        };
        let file: File = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        for (key, e) in file.auths {
            let cred = if let Some(token) = e.identitytoken.filter(|t| !t.is_empty()) {
                Credential::IdentityToken(token)
            } else if let Some(auth) = e.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|err| invalid(format!("auths.{key:?}.auth: not base64: {err}")))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| invalid(format!("auths.{key:?}.auth: not UTF-8")))?;
                let (u, p) = text.split_once(':').ok_or_else(|| {
                    invalid(format!("auths.{key:?}.auth: not base64 of user:password"))
                })?;
                Credential::Basic {
                    username: u.into(),
                    password: p.into(),
                }
            } else if let (Some(u), Some(p)) = (e.username, e.password) {
                Credential::Basic {
                    username: u,
                    password: p,
                }
            } else {
                continue;
            };
            self.entries
                .insert(normalize_key(&key), (cred, path.display().to_string()));
        }
        Ok(())
    }

    /// These credentials with a pull request's on top.
    pub fn with_request(mut self, auth: Option<RequestAuth>) -> Self {
        self.request = auth.map(|a| (a.credential, a.server_address));
        self
    }

    /// The credential for a dialled host (`host[:port]`) and where it came from.
    pub fn for_host(&self, host: &str) -> Option<(&Credential, &str)> {
        if let Some((c, server)) = &self.request {
            let docker_hub =
                |h: &str| matches!(h, "registry-1.docker.io" | "docker.io" | "index.docker.io");
            if server.is_empty() || server == host || (docker_hub(server) && docker_hub(host)) {
                return Some((c, "the pull request"));
            }
        }
        let found = self.entries.get(host).or_else(|| {
            matches!(
                host,
                "registry-1.docker.io" | "docker.io" | "index.docker.io"
            )
            .then(|| {
                self.entries
                    .get("docker.io")
                    .or_else(|| self.entries.get(&normalize_key(DOCKER_HUB_KEY)))
            })
            .flatten()
        });
        found.map(|(c, s)| (c, s.as_str()))
    }

    /// Number of hosts with configured credentials.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No credentials at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.request.is_none()
    }
}

/// `Authorization: Basic …` for a user and password.
pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower case).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`, …), names lower case.
    pub params: HashMap<String, String>,
}

/// Parses a `WWW-Authenticate` value (RFC 7235 auth-params, quoted or token values). Only
/// the first challenge is returned: registries send one.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                val.push(*c);
                chars.next();
            }
        }
        params.insert(name.trim().to_ascii_lowercase(), val.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
    }

    #[test]
    fn reads_docker_config_forms_and_map_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths": {{
                    "mirror.local:5000": {{"auth": "{auth}"}},
                    "https://index.docker.io/v1/": {{"username": "bob", "password": "pw"}},
                    "ghcr.io": {{"identitytoken": "tok"}},
                    "empty.example": {{}}
                }}}}"#
            ),
        )
        .unwrap();
        let mut map = HashMap::new();
        map.insert(
            "ghcr.io".to_string(),
            Credential::Basic {
                username: "carol".into(),
                password: "x".into(),
            },
        );
        let creds = Credentials::load(Some(&path), &map).unwrap();
        assert_eq!(
            creds.for_host("mirror.local:5000").unwrap().0,
            &Credential::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            }
        );
        assert!(
            matches!(creds.for_host("registry-1.docker.io").unwrap().0, Credential::Basic { username, .. } if username == "bob")
        );
        let (ghcr, source) = creds.for_host("ghcr.io").unwrap();
        assert!(matches!(ghcr, Credential::Basic { username, .. } if username == "carol"));
        assert_eq!(source, "the berthd configuration");
        assert!(creds.for_host("empty.example").is_none());
        // Secrets never reach Debug output.
        assert!(!format!("{creds:?}").contains("s3cret"));

        std::fs::write(&path, r#"{"auths": {"h": {"auth": "!!"}}}"#).unwrap();
        let err = Credentials::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("auths.\"h\".auth: not base64"),
            "{err}"
        );
        // A pull request's credentials win, for the host they name or for every host.
        let req = RequestAuth::from_fields("", "", &auth, "", "", "https://mirror.local:5000/v2/")
            .unwrap()
            .unwrap();
        assert_eq!(req.server_address, "mirror.local:5000");
        let with = creds.clone().with_request(Some(req));
        assert_eq!(
            with.for_host("mirror.local:5000").unwrap().1,
            "the pull request"
        );
        assert_eq!(
            with.for_host("ghcr.io").unwrap().1,
            "the berthd configuration"
        );
        let any = creds
            .clone()
            .with_request(RequestAuth::from_fields("", "", "", "", "rt", "").unwrap());
        assert_eq!(
            any.for_host("ghcr.io").unwrap().0,
            &Credential::RegistryToken("rt".into())
        );
        assert!(!format!("{any:?}").contains("\"rt\""));
        let hub = creds
            .clone()
            .with_request(RequestAuth::from_fields("u", "p", "", "", "", "docker.io").unwrap());
        assert_eq!(
            hub.for_host("registry-1.docker.io").unwrap().1,
            "the pull request"
        );
        assert_eq!(
            RequestAuth::from_fields("", "", "", "", "", "x").unwrap(),
            None
        );
        assert!(RequestAuth::from_fields("", "", "!!", "", "", "").is_err());
        // A missing file is no credentials, not an error.
        assert!(
            Credentials::load(Some(&dir.path().join("none")), &HashMap::new())
                .unwrap()
                .is_empty()
        );
    }
}
