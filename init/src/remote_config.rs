//! `berth.config=<url>`: a node configuration fetched over HTTP at boot, for PXE nodes that
//! have no state disk to hold a node file.
//!
//! Once networking is up, init fetches the URL (plain `http://` only: no TLS, see below) and
//! layers the document exactly like the node file: image file → node file → **fetched file**
//! → the `berth.` arguments of the kernel command line (which still win). Its invalid keys are
//! reported with the URL and line (`http://10.0.2.2:8080/node.toml:3: key …`) and dropped
//! alone. A fetch that keeps failing is retried with back-off for `[remote_config]
//! retry_secs`, then reported once with the URL, and the node goes on without it.
//!
//! The fetch happens after the network stage, so only settings used from then on can still
//! change: `[time]`, `[berthd]` (but its `address`), `[[service]]`, `[shutdown]`, `[sysctl]` and `[rlimits]`
//! (re-applied when they differ) and `[network] hostname` (set again). Everything used
//! before (`[console]`, `[modules]`, `[bridge]`, `[storage]`, `[log]`, the rest of
//! `[network]`, `[remote_config]` itself) keeps its earlier value, and a fetched file that
//! changes one of those gets a warning naming the section (docs/pxe.md).
//!
//! Why a hand-written HTTP/1.0 GET over `std::net::TcpStream` rather than a crate (`ureq`
//! without TLS being the smallest well-kept blocking one): init is synchronous and
//! threads-only, its size and idle RSS are budgeted (issue 3: RSS < 4 MiB), and one GET of a
//! small text file needs none of what a client crate brings (connection pools, cookies,
//! redirects, chunked decoding, a URL crate). Asking for HTTP/1.0 means the server sends
//! either a `Content-Length` or closes the connection at the end, never chunked encoding,
//! so the reader is ~60 lines. Measured: fetching and layering add 25 KiB to the static
//! `berth-init` (5,668,112 → 5,693,776 bytes, release, thin LTO, stripped; docs/pxe.md). Host names are not resolved (init has no resolver of its own
//! before berthd, and static glibc must not use NSS): the URL names an IP address, as PXE
//! setups do (`${next-server}` in the iPXE script).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};
use crate::console::Console;

/// Where the fetched document is kept (for the loader, and for an operator to look at).
pub const FETCHED_PATH: &str = "/run/berth/remote-config.toml";

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a read or write may stall.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Largest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// `[remote_config]`: how `berth.config=<url>` is fetched.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// How long to keep retrying a failing fetch (back-off 0.25 s doubling to 4 s) before
    /// going on without the file.
    pub retry_secs: u64,
    /// Largest document accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            retry_secs: 30,
            max_bytes: 1 << 20,
        }
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
}

impl FetchError {
    /// Whether trying again can help (a server still starting, a link still coming up).
    fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. } | Self::Io { .. } | Self::Status { .. } | Self::Malformed { .. }
        )
    }
}

/// A parsed `http://` URL with an IP-address host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Server address.
    pub addr: SocketAddr,
    /// The `Host:` header value (`host[:port]` as written).
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://<ip>[:port][/path]`; IPv6 addresses in brackets.
    pub fn parse(url: &str) -> Result<Self, FetchError> {
        let fail = |reason: &str| FetchError::Url {
            reason: reason.to_string(),
        };
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(fail(
                    "https is not supported (init fetches plain http only; serve the file on the provisioning network)",
                ))
            }
            _ => return Err(fail("expected an http:// URL")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(fail("user information in the URL is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| fail("unclosed [ in the host"))?;
            (ip, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(fail("no host"));
        }
        let ip: IpAddr = host.parse().map_err(|_| {
            fail(&format!(
                "host {host:?} is not an IP address (init resolves no names this early; use the server's address)"
            ))
        })?;
        let port = match port {
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| fail(&format!("bad port {p:?}")))?,
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("whitespace in the path"));
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host: authority.to_string(),
            path,
        })
    }
}

/// One HTTP/1.0 GET; the body if the answer is `200`.
pub fn get(url: &HttpUrl, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let mut stream = TcpStream::connect_timeout(&url.addr, CONNECT_TIMEOUT).map_err(|source| {
        FetchError::Connect {
            addr: url.addr,
            source,
        }
    })?;
    let io = |what| move |source| FetchError::Io { what, source };
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(io("set socket timeouts"))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: berth-init/{}\r\nAccept: */*\r\n\r\n",
        url.path,
        url.host,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io("send the request"))?;
    // Read until the end of the head, keeping what follows it.
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(FetchError::Malformed {
                reason: "response head too long",
            });
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).map_err(io("read the response"))?;
        if n == 0 {
            return Err(FetchError::Malformed {
                reason: "connection closed before the end of the response head",
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| FetchError::Malformed {
        reason: "response head is not text",
    })?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..))
        .ok_or(FetchError::Malformed {
            reason: "no HTTP status line",
        })?;
    if !status.starts_with("200") {
        return Err(FetchError::Status {
            status: status.trim().to_string(),
        });
    }
    let mut length: Option<u64> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().map_err(|_| FetchError::Malformed {
                reason: "bad Content-Length",
            })?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.trim().eq_ignore_ascii_case("identity")
        {
            // HTTP/1.0 requests must not get chunked answers (RFC 9112 §7.1).
            return Err(FetchError::Malformed {
                reason: "transfer encoding on an HTTP/1.0 response",
            });
        }
    }
    if length.is_some_and(|l| l > max_bytes) {
        return Err(FetchError::TooLarge { max: max_bytes });
    }
    let mut body = buf.split_off(head_end);
    // One byte over the limit tells "too large" from "exactly the limit".
    let limit = length.unwrap_or(max_bytes + 1);
    (&mut stream)
        .take(limit.saturating_sub(body.len() as u64))
        .read_to_end(&mut body)
        .map_err(io("read the body"))?;
    match length {
        Some(l) if (body.len() as u64) < l => Err(FetchError::Malformed {
            reason: "connection closed before Content-Length bytes",
        }),
        Some(l) => {
            body.truncate(l as usize);
            Ok(body)
        }
        None if body.len() as u64 > max_bytes => Err(FetchError::TooLarge { max: max_bytes }),
        None => Ok(body),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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
    let parsed = match HttpUrl::parse(url) {
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
        let result = get(&parsed, config.max_bytes)
            .and_then(|body| String::from_utf8(body).map_err(|_| FetchError::NotText));
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
    let path = Path::new(FETCHED_PATH);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(err) = std::fs::write(path, &text) {
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
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let u = HttpUrl::parse("http://10.0.2.2:8080/n/node.toml?x=1#f").unwrap();
        assert_eq!(u.addr, "10.0.2.2:8080".parse().unwrap());
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("10.0.2.2:8080", "/n/node.toml?x=1")
        );
        let u = HttpUrl::parse("http://[fd00::1]").unwrap();
        assert_eq!((u.addr.port(), u.path.as_str()), (80, "/"));
        for (url, want) in [
            ("https://10.0.0.1/x", "https is not supported"),
            ("ftp://10.0.0.1/x", "expected an http:// URL"),
            ("http://boot.example/x", "is not an IP address"),
            ("http://10.0.0.1:99999/x", "bad port"),
            ("http:///x", "no host"),
        ] {
            let err = HttpUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    /// Serves each of `answers` to one connection, in order, on loopback.
    fn serve(answers: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).unwrap();
                requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(&answer).unwrap();
            }
            requests
        });
        (format!("http://{addr}"), handle)
    }

    #[test]
    fn gets_a_document_with_and_without_content_length() {
        let (base, server) = serve(vec![
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello-extra".to_vec(),
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil close".to_vec(),
        ]);
        let url = HttpUrl::parse(&format!("{base}/node.toml")).unwrap();
        assert_eq!(get(&url, 100).unwrap(), b"hello");
        assert_eq!(get(&url, 100).unwrap(), b"until close");
        let requests = server.join().unwrap();
        assert!(
            requests[0].starts_with("GET /node.toml HTTP/1.0\r\nHost: 127.0.0.1:"),
            "{requests:?}"
        );
    }

    #[test]
    fn errors_name_the_status_and_the_limit() {
        let (base, server) = serve(vec![
            b"HTTP/1.0 404 Not Found\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\n\r\n0123456789ABC".to_vec(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nshort".to_vec(),
        ]);
        let url = HttpUrl::parse(&base).unwrap();
        assert_eq!(
            get(&url, 10).unwrap_err().to_string(),
            "server answered 404 Not Found"
        );
        let too_large = "document larger than 10 bytes ([remote_config] max_bytes)";
        assert_eq!(get(&url, 10).unwrap_err().to_string(), too_large);
        assert_eq!(get(&url, 10).unwrap_err().to_string(), too_large);
        assert!(get(&url, 10)
            .unwrap_err()
            .to_string()
            .contains("before Content-Length"));
        server.join().unwrap();
    }

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
