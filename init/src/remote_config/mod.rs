//! `berth.config=<url>`: a node configuration fetched over the network at boot, for PXE nodes
//! that have no state disk to hold a node file.
//!
//! Once networking is up, init fetches the URL and layers the document exactly like the node
//! file: image file → node file → **fetched file** → the `berth.` arguments of the kernel
//! command line (which still win). Its invalid keys are reported with the URL and line
//! (`http://10.0.2.2:8080/node.toml:3: key …`) and dropped alone. A fetch that keeps failing
//! is retried with back-off for `[remote_config] retry_secs`, then reported once with the URL,
//! and the node goes on without it.
//!
//! **Credentials never travel in plain HTTP.** A document may carry the remote API's
//! credentials (`[remote] ca/cert/key` as PEM, docs/remote-api.md); one that holds a private
//! key and came over `http://` is refused whole with one error line. `https://` URLs are
//! fetched with the server's certificate pinned (`[remote_config] pin = "sha256:…"`, set on
//! the kernel command line next to the URL): by the multi-call binary's `berth-fetch`
//! ([`https`]), so init itself links no TLS stack.
//!
//! The fetch happens after the network stage, so only settings used from then on can still
//! change: `[time]`, `[berthd]` (but its `address`), `[[service]]`, `[shutdown]`, `[sysctl]`,
//! `[rlimits]` (re-applied when they differ), `[remote]` and `[network] hostname` (set
//! again). Everything used before (`[console]`, `[modules]`, `[bridge]`, `[storage]`, `[log]`,
//! the rest of `[network]`, `[remote_config]` itself) keeps its earlier value, and a fetched
//! file that changes one of those gets a warning naming the section (docs/pxe.md).
//!
//! Why a hand-written HTTP/1.0 GET ([`http`]) over `std::net::TcpStream` rather than a crate
//! (`ureq` without TLS being the smallest well-kept blocking one): init is synchronous and
//! threads-only, its size and idle RSS are budgeted (issue 3: RSS < 4 MiB), and one GET of a
//! small text file needs none of what a client crate brings (connection pools, cookies,
//! redirects, chunked decoding, a URL crate). Asking for HTTP/1.0 means the server sends
//! either a `Content-Length` or closes the connection at the end, never chunked encoding,
//! so the reader is ~60 lines. Measured: fetching and layering add 25 KiB to the static
//! `berth-init` (5,668,112 → 5,693,776 bytes, release, thin LTO, stripped; docs/pxe.md). Host
//! names are not resolved (init has no resolver of its own before berthd, and static glibc
//! must not use NSS): the URL names an IP address, as PXE setups do (`${next-server}` in the
//! iPXE script).

pub mod http;
pub mod https;

pub use http::{get, HttpUrl};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::console::Console;

/// Where the fetched document is kept (for the loader, and for an operator to look at).
pub const FETCHED_PATH: &str = "/run/berth/remote-config.toml";

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Largest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// `[remote_config]`: how `berth.config=<url>` is fetched.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// How long to keep retrying a failing fetch (back-off 0.25 s doubling to 4 s) before
    /// going on without the file.
    pub retry_secs: u64,
    /// Largest document accepted, in bytes.
    pub max_bytes: u64,
    /// `https://` URLs: the SHA-256 of the server's certificate or of a CA certificate in the
    /// chain it sends (`sha256:<64 hex>`); required for them.
    pub pin: Pin,
    /// The HTTPS fetcher (the multi-call binary's `berth-fetch` applet).
    pub fetch_path: PathBuf,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            retry_secs: 30,
            max_bytes: 1 << 20,
            pin: Pin(String::new()),
            fetch_path: PathBuf::from("/usr/bin/berth-fetch"),
        }
    }
}

/// A certificate pin: `""` or `sha256:<64 hex digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pin(pub String);

impl TryFrom<String> for Pin {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let ok = text.is_empty()
            || text
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if ok {
            Ok(Pin(text.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?}: expected sha256:<64 hex digits> (`berthctl pki fingerprint FILE` prints it)"
            ))
        }
    }
}

impl From<Pin> for String {
    fn from(p: Pin) -> String {
        p.0
    }
}

/// Fetching the configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not one we can fetch.
    #[error("{reason}")]
    Url {
        /// What is wrong with it.
        reason: String,
    },
    /// No TCP connection.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The exchange broke off.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with something other than 200.
    #[error("server answered {status}")]
    Status {
        /// The status line after the version, e.g. `404 Not Found`.
        status: String,
    },
    /// The response is not HTTP as we know it.
    #[error("malformed response: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The document is larger than `[remote_config] max_bytes`.
    #[error("document larger than {max} bytes ([remote_config] max_bytes)")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The document is not UTF-8 text.
    #[error("document is not UTF-8 text")]
    NotText,
    /// The HTTPS fetcher failed (its own words: pin mismatch, handshake, status, …).
    #[error("{message}")]
    Https {
        /// Its error line.
        message: String,
        /// Whether trying again can help.
        transient: bool,
    },
}

impl FetchError {
    /// Whether trying again can help (a server still starting, a link still coming up).
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Io { .. }
                | Self::Status { .. }
                | Self::Malformed { .. }
                | Self::Https {
                    transient: true,
                    ..
                }
        )
    }
}

/// The outcome of [`fetch`]: the document or the last error, and what it took.
#[derive(Debug)]
pub struct Fetched {
    /// The document, or the last attempt's error.
    pub result: Result<String, FetchError>,
    /// Attempts made.
    pub attempts: u32,
    /// Time from the first attempt to the outcome.
    pub elapsed: Duration,
}

/// Fetches `url`, retrying transient failures with back-off until `config.retry_secs` pass.
pub fn fetch(url: &str, config: &RemoteConfig) -> Fetched {
    let started = Instant::now();
    let budget = Duration::from_secs(config.retry_secs);
    let mut delay = INITIAL_BACKOFF;
    let mut attempts = 0;
    let parsed = HttpUrl::parse(url).and_then(|p| {
        if p.tls && config.pin.0.is_empty() {
            Err(FetchError::Url {
                reason: "an https:// URL needs the server's certificate pinned: \
                         berth.remote_config.pin=sha256:… on the kernel command line"
                    .into(),
            })
        } else {
            Ok(p)
        }
    });
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            return Fetched {
                result: Err(err),
                attempts,
                elapsed: started.elapsed(),
            }
        }
    };
    loop {
        attempts += 1;
        let body = if parsed.tls {
            https::get(&config.fetch_path, url, &config.pin.0, config.max_bytes)
        } else {
            get(&parsed, config.max_bytes)
        };
        let result = body.and_then(|body| String::from_utf8(body).map_err(|_| FetchError::NotText));
        let give_up = match &result {
            Ok(_) => true,
            Err(err) => !err.is_transient() || started.elapsed() + delay > budget,
        };
        if give_up {
            return Fetched {
                result,
                attempts,
                elapsed: started.elapsed(),
            };
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Sections the fetched file can no longer change (used before the network is up), for the
/// warning; each is put back to its earlier value.
fn restore_early_sections(fetched: &mut Config, before: &Config) -> Vec<&'static str> {
    let mut ignored = Vec::new();
    macro_rules! keep {
        ($($field:ident => $name:literal),* $(,)?) => {$(
            if fetched.$field != before.$field {
                ignored.push($name);
                fetched.$field = before.$field.clone();
            }
        )*};
    }
    keep!(
        console => "[console]",
        modules => "[modules]",
        bridge => "[bridge]",
        storage => "[storage]",
        log => "[log]",
        remote_config => "[remote_config]",
    );
    // The API bridge already points at berthd's socket.
    if fetched.berthd.address != before.berthd.address {
        ignored.push("[berthd] address");
        fetched.berthd.address = before.berthd.address.clone();
    }
    // [network]: only the host name can still change.
    let hostname = std::mem::take(&mut fetched.network.hostname);
    let before_network = crate::net::NetworkConfig {
        hostname: String::new(),
        ..before.network.clone()
    };
    if fetched.network != before_network {
        ignored.push("[network] (except hostname)");
    }
    fetched.network = crate::net::NetworkConfig {
        hostname,
        ..before.network.clone()
    };
    ignored
}

/// Loads the layers with the fetched document at `fetched_path` between `files` and the
/// command line. Errors in the fetched document name `url` instead of the file.
pub fn layer(
    files: &[&Path],
    fetched_path: &Path,
    url: &str,
    cmdline: &str,
) -> (Config, Vec<ConfigError>) {
    let mut all: Vec<&Path> = files.to_vec();
    all.push(fetched_path);
    let loaded = Config::load_layers(&all, cmdline);
    let errors = loaded
        .file_errors
        .into_iter()
        .filter(|e| e.path() == fetched_path)
        .map(|e| match e {
            ConfigError::Invalid {
                line, key, message, ..
            } => ConfigError::Invalid {
                path: PathBuf::from(url),
                line,
                key,
                message,
            },
            ConfigError::Read { source, .. } => ConfigError::Read {
                path: PathBuf::from(url),
                source,
            },
        })
        .collect();
    (loaded.config, errors)
}

/// Stage 2's step after the network: fetches `url` (if any), layers it over `files` (image
/// file, node file) under the command line, applies what can still change, and returns the
/// configuration to run with. Never fails: problems are console lines.
pub fn stage(
    url: Option<&str>,
    config: Config,
    files: &[&Path],
    cmdline: &str,
    console: Console,
) -> Config {
    let Some(url) = url else { return config };
    let fetched = fetch(url, &config.remote_config);
    let text = match fetched.result {
        Ok(text) => text,
        Err(err) => {
            let cause = std::error::Error::source(&err)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            console.error(&format!(
                "berth.config={url}: cannot fetch: {err}{cause} ({} attempt(s) in {:.1} s); \
                 continuing with the image file, node file and command line",
                fetched.attempts,
                fetched.elapsed.as_secs_f64()
            ));
            return config;
        }
    };
    let plain = url.starts_with("http://");
    if plain && crate::node_config::has_private_key(text.as_bytes()) {
        console.error(&format!(
            "berth.config={url}: the document carries a private key over plain HTTP; refused \
             whole (anyone on the network could read it). Serve it over https:// with \
             berth.remote_config.pin=sha256:<server certificate> (docs/pxe.md), and issue a new \
             key: this one travelled in the clear"
        ));
        return config;
    }
    let path = Path::new(FETCHED_PATH);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // 0600: the document may hold credentials.
    if let Err(err) = crate::atomic::write(path, text.as_bytes(), 0o600) {
        console.error(&format!(
            "berth.config={url}: cannot keep the document in {}: {err}; not applied",
            path.display()
        ));
        return config;
    }
    let (mut new, errors) = layer(files, path, url, cmdline);
    for err in &errors {
        console.error(&format!("{err}; {}", err.consequence()));
    }
    let ignored = restore_early_sections(&mut new, &config);
    if !ignored.is_empty() {
        console.warn(&format!(
            "berth.config={url}: {} already applied before the network was up; \
             set them in the node file or on the kernel command line",
            ignored.join(", ")
        ));
    }
    if new.sysctl != config.sysctl || new.rlimits != config.rlimits {
        crate::system::apply_settings(&new, console);
    }
    let hostname = &new.network.hostname;
    if !hostname.is_empty() && *hostname != config.network.hostname {
        match nix::unistd::sethostname(hostname) {
            Ok(()) => console.info(&format!(
                "network: host name {hostname} (from berth.config)"
            )),
            Err(err) => console.warn(&format!(
                "network: cannot set the host name to {hostname:?}: {err}"
            )),
        }
    }
    console.info(&format!(
        "config: {url} applied ({} bytes in {} ms, {} attempt(s))",
        text.len(),
        fetched.elapsed.as_millis(),
        fetched.attempts
    ));
    new
}

#[cfg(test)]
mod tests {
    use super::http::serve;
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn retries_until_the_server_answers_then_gives_up_in_time() {
        // A server that first says 503, then serves the file.
        let (base, server) = serve(vec![
            b"HTTP/1.0 503 Service Unavailable\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\n\r\n[time]\n".to_vec(),
        ]);
        let fetched = fetch(&format!("{base}/n"), &RemoteConfig::default());
        assert_eq!(fetched.result.unwrap(), "[time]\n");
        assert_eq!(fetched.attempts, 2);
        server.join().unwrap();
        // Nothing listens: transient, retried until the budget is spent, then the last error.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RemoteConfig {
            retry_secs: 1,
            ..RemoteConfig::default()
        };
        let started = Instant::now();
        let fetched = fetch(&format!("http://127.0.0.1:{port}/n"), &config);
        println!(
            "gave up after {} attempts in {:?}",
            fetched.attempts,
            started.elapsed()
        );
        assert!(fetched.attempts >= 2, "{fetched:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "hang guard");
        let err = fetched.result.unwrap_err();
        assert!(
            err.to_string().starts_with("cannot connect to 127.0.0.1:"),
            "{err}"
        );
        // A bad URL is not retried.
        let fetched = fetch("http://name.example/x", &config);
        assert_eq!(fetched.attempts, 0);
    }

    /// A document carrying a private key over plain HTTP is refused whole (its host name is
    /// not applied), before it is written anywhere.
    #[test]
    fn a_private_key_over_plain_http_is_refused() {
        let doc = b"HTTP/1.0 200 OK\r\n\r\n[network]\nhostname = \"leaked\"\n[remote]\nkey = \"\"\"\n-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n\"\"\"\n";
        let (base, server) = serve(vec![doc.to_vec()]);
        let before = Config::default();
        let after = stage(
            Some(&format!("{base}/node.toml")),
            before.clone(),
            &[],
            "",
            crate::console::Console::new(crate::console::Level::Error),
        );
        server.join().unwrap();
        assert_eq!(after, before);
        // And https needs a pin.
        let fetched = fetch("https://10.0.2.2/node.toml", &RemoteConfig::default());
        let err = fetched.result.unwrap_err().to_string();
        assert!(err.contains("berth.remote_config.pin"), "{err}");
        assert_eq!(fetched.attempts, 0);
    }

    #[test]
    fn fetched_file_layers_after_the_node_file_before_the_cmdline() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("init.toml");
        let node = dir.path().join("node.toml");
        let fetched = dir.path().join("remote.toml");
        std::fs::write(&image, "[berthd]\nmax_failures = 3\nbackoff_max_ms = 100\n").unwrap();
        std::fs::write(&node, "[berthd]\nmax_failures = 7\n").unwrap();
        std::fs::write(
            &fetched,
            "[berthd]\nmax_failures = 8\nbackoff_initial_ms = 50\n\n[shutdown]\ntimeout_secs = \"x\"\n[[service]]\nname = \"s\"\npath = \"/s\"\n",
        )
        .unwrap();
        let url = "http://10.0.2.2:8080/node.toml";
        let (config, errors) = layer(
            &[&image, &node],
            &fetched,
            url,
            "berth.berthd.backoff_initial_ms=60",
        );
        assert_eq!(config.berthd.max_failures, 8);
        assert_eq!(config.berthd.backoff_max_ms, 100);
        assert_eq!(config.berthd.backoff_initial_ms, 60);
        assert_eq!(config.services.len(), 1);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let line = errors[0].to_string();
        assert!(
            line.starts_with("http://10.0.2.2:8080/node.toml:6: key shutdown.timeout_secs: "),
            "{line}"
        );
    }

    #[test]
    fn early_sections_keep_their_values_and_are_named() {
        let before = Config::default();
        let mut fetched = Config::default();
        fetched.console.level = crate::console::Level::Debug;
        fetched.network.hostname = "n1".into();
        fetched.network.wait_secs += 1;
        fetched.berthd.max_failures = 9;
        fetched.berthd.address = "/elsewhere.sock".into();
        let ignored = restore_early_sections(&mut fetched, &before);
        assert_eq!(
            ignored,
            [
                "[console]",
                "[berthd] address",
                "[network] (except hostname)"
            ]
        );
        assert_eq!(fetched.berthd.max_failures, 9);
        assert_eq!(fetched.berthd.address, before.berthd.address);
        assert_eq!(fetched.console, before.console);
        assert_eq!(fetched.network.wait_secs, before.network.wait_secs);
        assert_eq!(fetched.network.hostname, "n1");
    }
}
