//! Registry host configuration in containerd's `certs.d` format: which endpoints, in which
//! order and with which TLS settings, a pull of an image from one registry uses.
//!
//! The rules are containerd's (`docs/hosts.md` and `remotes/docker/config/hosts.go`), so an
//! existing containerd registry directory can be dropped in unchanged:
//!
//! - For a registry `host:port` the first existing directory of `<config_path>/host_port_`,
//!   `<config_path>/host:port` and `<config_path>/_default` is used (for a registry without a
//!   port: `<config_path>/host`, then `_default`). Only the first one found counts, even when
//!   it holds no `hosts.toml`. No directory at all: the registry itself is the only endpoint.
//! - In that directory `hosts.toml` lists `[host."…"]` entries, tried in file order, then the
//!   root entry: `server` when given (which replaces the registry itself: "mirror-only"), else
//!   the registry itself (`registry-1.docker.io` for `docker.io`). A directory without
//!   `hosts.toml` uses Docker's certificate files (`*.crt` CAs, `*.cert` + `*.key` pairs) for
//!   the registry itself.
//! - An endpoint whose host differs from the image's registry is sent `?ns=<registry>`.
//!
//! Where berth is stricter than containerd: a `hosts.toml` that does not parse, has an unknown
//! key or an unknown capability is an error naming the file and line (containerd logs it and
//! silently falls back to the certificate files), because a mapping that is quietly ignored
//! sends an air-gapped node to the internet it does not have.
//!
//! Nothing is cached: [`resolve`] reads the directory on every call, so an edited
//! `hosts.toml` applies to the next pull without a restart.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{ImDocument, Item, TableLike, Value};

use super::{Capabilities, RegistryHost, Scheme, TlsSettings};

/// The upstream endpoint containerd uses for `docker.io`.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The registry a reference without a registry part names.
pub const DOCKER_HUB: &str = "docker.io";
/// The catch-all directory under `config_path`.
pub const DEFAULT_DIR: &str = "_default";
/// The file read in each host directory.
pub const HOSTS_FILE: &str = "hosts.toml";

/// Errors resolving the endpoints of a registry.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// A file or directory of the hosts configuration could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `hosts.toml` is not valid TOML or a key has a wrong name, type or value.
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        /// 1-based line.
        line: usize,
        message: String,
    },
    /// The registry name is not a `host[:port]`.
    #[error("registry {0:?}: not a valid host[:port]")]
    BadRegistry(String),
    /// An image reference could not be split into registry and repository.
    #[error("image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
}

/// An image reference split the way a pull needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// `host[:port]` of the registry the reference names (`docker.io` when it names none).
    pub registry: String,
    /// Repository path inside the registry (`library/alpine` for `alpine`).
    pub repository: String,
    /// The tag, if any (`latest` when neither tag nor digest is given).
    pub tag: Option<String>,
    /// The digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

impl ImageName {
    /// The tag or digest that identifies the manifest (`digest` wins when both are given).
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

/// Splits an image reference into registry, repository, tag and digest with Docker's
/// normalisation: the first path component is a registry only if it contains `.` or `:` or
/// is `localhost`; otherwise the registry is `docker.io`, and a one-component repository
/// there gets `library/`. No tag and no digest means `latest`.
pub fn parse_reference(reference: &str) -> Result<ImageName, HostsError> {
    let bad = |reason: &str| HostsError::BadReference {
        reference: reference.to_string(),
        reason: reason.to_string(),
    };
    if reference.is_empty() {
        return Err(bad("empty"));
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => {
            let (algo, hex) = d
                .split_once(':')
                .ok_or_else(|| bad("digest must be <algorithm>:<hex>"))?;
            if algo.is_empty()
                || hex.is_empty()
                || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                || !algo
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+._-".contains(&b))
            {
                return Err(bad("digest must be <algorithm>:<hex>"));
            }
            (r, Some(d.to_string()))
        }
        None => (reference, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let t = &rest[last_slash + i + 1..];
            if t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                return Err(bad("invalid tag"));
            }
            (&rest[..last_slash + i], Some(t.to_string()))
        }
        None => (rest, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            (first.to_string(), path.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    check_registry(&registry)?;
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if repository.is_empty()
        || repository.split('/').any(|c| {
            !c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                || !c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
    {
        return Err(bad(
            "repository must be '/'-separated components of lowercase letters and digits joined by '.', '_' or '-'",
        ));
    }
    let tag = if tag.is_none() && digest.is_none() {
        Some("latest".to_string())
    } else {
        tag
    };
    Ok(ImageName {
        registry,
        repository,
        tag,
        digest,
    })
}

/// A registry name must be a plain `host[:port]` (or `[v6]:port`): it becomes a directory
/// name under `config_path`, so `..` or a `/` must never get that far.
fn check_registry(registry: &str) -> Result<(), HostsError> {
    let ok = !registry.is_empty()
        && !registry.starts_with(['.', '-', ':'])
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && !registry.contains("..");
    if ok {
        Ok(())
    } else {
        Err(HostsError::BadRegistry(registry.to_string()))
    }
}

/// containerd's `hostDirectory`: `host:port` → `host_port_`.
fn port_dir_name(registry: &str) -> Option<String> {
    let i = registry.rfind(':')?;
    (i > 0).then(|| format!("{}_{}_", &registry[..i], &registry[i + 1..]))
}

/// The directories tried for `registry`, in order (containerd's `hostPaths`).
pub fn candidate_dirs(config_path: &Path, registry: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = port_dir_name(registry) {
        v.push(config_path.join(p));
    }
    v.push(config_path.join(registry));
    v.push(config_path.join(DEFAULT_DIR));
    v
}

/// containerd's `docker.IsLocalhost`: `localhost` or a loopback IP, with or without a port.
pub fn is_localhost(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The ordered endpoints a pull from `registry` (`host[:port]` as in the image reference)
/// uses, from the hosts directory `config_path` (None: no directory, the registry itself).
/// Reads the directory on every call.
pub fn resolve(
    config_path: Option<&Path>,
    registry: &str,
) -> Result<Vec<RegistryHost>, HostsError> {
    match config_path {
        Some(root) => resolve_in(&[root], registry),
        None => resolve_in(&[], registry),
    }
}

/// [`resolve`] over several hosts directories (containerd CRI's `config_path = "a:b"`): the
/// first root holding a matching directory (its `_default` included) wins, so a node's own
/// directory listed first overrides the image's.
pub fn resolve_in(roots: &[&Path], registry: &str) -> Result<Vec<RegistryHost>, HostsError> {
    check_registry(registry)?;
    let mut dir = None;
    for root in roots {
        dir = find_dir(root, registry)?;
        if dir.is_some() {
            break;
        }
    }
    let entries = match &dir {
        Some(d) => load_dir(d)?,
        None => vec![Entry::default()],
    };
    Ok(finish(entries, registry))
}

fn find_dir(root: &Path, registry: &str) -> Result<Option<PathBuf>, HostsError> {
    for p in candidate_dirs(root, registry) {
        match std::fs::metadata(&p) {
            Ok(_) => return Ok(Some(p)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(HostsError::Read { path: p, source }),
        }
    }
    Ok(None)
}

/// One entry as written, before defaults for the root entry are filled in.
#[derive(Debug, Default)]
struct Entry {
    /// None: the root entry without `server`.
    endpoint: Option<(Scheme, String, String)>,
    capabilities: Option<Capabilities>,
    tls: TlsSettings,
    headers: Vec<(String, Vec<String>)>,
    override_path: bool,
    dial_timeout: Option<Duration>,
    source: Option<PathBuf>,
}

/// containerd's `ConfigureHosts`: the root entry without `server` becomes the registry itself.
fn finish(entries: Vec<Entry>, registry: &str) -> Vec<RegistryHost> {
    entries
        .into_iter()
        .map(|e| {
            let (scheme, host, path, capabilities) = match e.endpoint {
                Some((s, h, p)) => (s, h, p, e.capabilities.unwrap_or(Capabilities::ALL)),
                None => {
                    let (scheme, host) = if registry == DOCKER_HUB {
                        (Scheme::Https, DOCKER_HUB_HOST.to_string())
                    } else if is_localhost(registry) {
                        // ctr without --plain-http: plain HTTP for localhost.
                        (Scheme::Http, registry.to_string())
                    } else {
                        (Scheme::Https, registry.to_string())
                    };
                    (scheme, host, "/v2".to_string(), Capabilities::ALL)
                }
            };
            let is_proxy = host != registry && !(registry == DOCKER_HUB && host == DOCKER_HUB_HOST);
            RegistryHost {
                scheme,
                namespace: is_proxy.then(|| registry.to_string()),
                host,
                path,
                capabilities,
                tls: e.tls,
                headers: e.headers,
                override_path: e.override_path,
                dial_timeout: e.dial_timeout,
                source: e.source,
            }
        })
        .collect()
}

/// Reads one host directory (`certs.d/<host>/`) as a pull would, without pulling: the
/// `hosts.toml` there (or Docker's certificate-file layout) parses and names usable
/// endpoints. Returns how many endpoints it configures. `berthd --check-config --check-hosts`
/// uses it to judge a node configuration change before it is written.
pub fn check_dir(dir: &Path) -> Result<usize, HostsError> {
    load_dir(dir).map(|entries| entries.len())
}

fn load_dir(dir: &Path) -> Result<Vec<Entry>, HostsError> {
    let file = dir.join(HOSTS_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) if !text.is_empty() => parse_hosts_file(&text, &file, dir),
        Ok(_) => load_cert_files(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => load_cert_files(dir),
        Err(source) => Err(HostsError::Read { path: file, source }),
    }
}

/// containerd's `loadCertFiles`: a directory without `hosts.toml` in Docker's layout.
fn load_cert_files(dir: &Path) -> Result<Vec<Entry>, HostsError> {
    let read_err = |source| HostsError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<String> = Vec::new();
    for e in std::fs::read_dir(dir).map_err(read_err)? {
        let e = e.map_err(read_err)?;
        if e.file_type().map_err(read_err)?.is_dir() {
            continue;
        }
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut entry = Entry {
        source: Some(dir.to_path_buf()),
        ..Entry::default()
    };
    for n in &names {
        if n.ends_with(".crt") {
            entry.tls.ca_files.push(dir.join(n));
        }
        if let Some(stem) = n.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            let key = key.exists().then_some(key);
            entry.tls.client_certs.push((dir.join(n), key));
        }
    }
    Ok(vec![entry])
}

/// Locates errors in one file's text.
struct Located<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Located<'_> {
    fn err(&self, span: Option<Range<usize>>, message: impl Into<String>) -> HostsError {
        let line = span.map_or(1, |s| {
            self.text[..s.start.min(self.text.len())]
                .matches('\n')
                .count()
                + 1
        });
        HostsError::Invalid {
            path: self.path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// The span of `item`, else of its key in `table`.
fn span_of(table: &dyn TableLike, key: &str, item: &Item) -> Option<Range<usize>> {
    item.span()
        .or_else(|| table.key(key).and_then(|k| k.span()))
}

const HOST_KEYS: &[&str] = &[
    "capabilities",
    "ca",
    "client",
    "skip_verify",
    "header",
    "override_path",
    "dial_timeout",
];

/// Parses a `hosts.toml`: the `[host."…"]` entries in file order, then the root entry.
fn parse_hosts_file(text: &str, path: &Path, dir: &Path) -> Result<Vec<Entry>, HostsError> {
    let loc = Located { path, text };
    let doc = ImDocument::parse(text)
        .map_err(|e| loc.err(e.span(), format!("invalid TOML: {}", e.message().trim())))?;
    let root = doc.as_table();
    for (k, item) in root.iter() {
        if k != "server" && k != "host" && !HOST_KEYS.contains(&k) {
            return Err(loc.err(
                span_of(root, k, item),
                format!(
                    "unknown key `{k}` (expected server, host, {})",
                    HOST_KEYS.join(", ")
                ),
            ));
        }
    }
    let mut entries = Vec::new();
    if let Some(hosts) = root.get("host") {
        let t = hosts.as_table_like().ok_or_else(|| {
            loc.err(
                span_of(root, "host", hosts),
                "`host` must be a table of [host.\"<url>\"] entries",
            )
        })?;
        for (url, item) in t.iter() {
            let span = span_of(t, url, item);
            let section = item
                .as_table_like()
                .ok_or_else(|| loc.err(span.clone(), format!("host {url:?}: expected a table")))?;
            for (k, v) in section.iter() {
                if !HOST_KEYS.contains(&k) {
                    return Err(loc.err(
                        span_of(section, k, v),
                        format!(
                            "host {url:?}: unknown key `{k}` (expected {})",
                            HOST_KEYS.join(", ")
                        ),
                    ));
                }
            }
            let endpoint = parse_endpoint(url, section, &loc, span)?;
            entries.push(parse_entry(
                Some(endpoint),
                section,
                &loc,
                dir,
                &format!("host {url:?}: "),
            )?);
        }
    }
    let server = match root.get("server") {
        None => None,
        Some(item) => {
            let span = span_of(root, "server", item);
            let s = item
                .as_str()
                .ok_or_else(|| loc.err(span.clone(), "server: expected a string URL"))?;
            if s.is_empty() {
                None
            } else {
                Some(parse_endpoint(s, root, &loc, span)?)
            }
        }
    };
    entries.push(parse_entry(server, root, &loc, dir, "")?);
    Ok(entries)
}

/// containerd's server URL rules: no scheme means https; the path defaults to `/v2`, and
/// `/v2` is appended to a path that does not end in it, unless `override_path` is set.
fn parse_endpoint(
    url: &str,
    section: &dyn TableLike,
    loc: &Located<'_>,
    span: Option<Range<usize>>,
) -> Result<(Scheme, String, String), HostsError> {
    let override_path = match section.get("override_path") {
        Some(i) => i.as_bool().ok_or_else(|| {
            loc.err(
                span_of(section, "override_path", i),
                "override_path: expected true or false",
            )
        })?,
        None => false,
    };
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if url.contains("://") {
        return Err(loc.err(
            span,
            format!("{url:?}: unsupported scheme (expected http:// or https://)"),
        ));
    } else {
        (Scheme::Https, url)
    };
    let (host, raw_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty()
        || host.contains(['?', '#', '@'])
        || raw_path.contains(['?', '#'])
        || host.chars().any(char::is_whitespace)
    {
        return Err(loc.err(
            span,
            format!("{url:?}: expected [http[s]://]host[:port][/path]"),
        ));
    }
    let cleaned = clean_path(raw_path);
    let path = if cleaned.is_empty() {
        if override_path {
            String::new()
        } else {
            "/v2".to_string()
        }
    } else if cleaned.ends_with("/v2") || override_path {
        cleaned
    } else {
        format!("{cleaned}/v2")
    };
    Ok((scheme, host.to_string(), path))
}

/// Go's `path.Clean` for an absolute URL path; the root alone becomes empty.
fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn parse_entry(
    endpoint: Option<(Scheme, String, String)>,
    section: &dyn TableLike,
    loc: &Located<'_>,
    dir: &Path,
    what: &str,
) -> Result<Entry, HostsError> {
    let mut e = Entry {
        endpoint,
        source: Some(loc.path.to_path_buf()),
        ..Entry::default()
    };
    let abs = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    if let Some(item) = section.get("capabilities") {
        let span = span_of(section, "capabilities", item);
        let arr = item.as_array().ok_or_else(|| {
            loc.err(
                span,
                format!("{what}capabilities: expected an array of strings"),
            )
        })?;
        let mut caps = Capabilities::default();
        for v in arr.iter() {
            let s = v.as_str().ok_or_else(|| {
                loc.err(v.span(), format!("{what}capabilities: expected strings"))
            })?;
            match s.to_ascii_lowercase().as_str() {
                "pull" => caps.pull = true,
                "resolve" => caps.resolve = true,
                "push" => caps.push = true,
                _ => {
                    return Err(loc.err(
                        v.span(),
                        format!("{what}unknown capability {s:?} (expected pull, resolve or push)"),
                    ))
                }
            }
        }
        // containerd: an empty list means the default, all three.
        e.capabilities = (!arr.is_empty()).then_some(caps);
    }
    if let Some(item) = section.get("ca") {
        let span = span_of(section, "ca", item);
        e.tls.ca_files = strings(item, span, loc, &format!("{what}ca"))?
            .iter()
            .map(|s| abs(s))
            .collect();
    }
    if let Some(item) = section.get("client") {
        let span = span_of(section, "client", item);
        let msg = format!(
            "{what}client: expected a path, or an array of paths and [certificate, key] pairs"
        );
        match item.as_value() {
            Some(Value::String(s)) => e.tls.client_certs.push((abs(s.value()), None)),
            Some(Value::Array(a)) => {
                for v in a.iter() {
                    match v {
                        Value::String(s) => e.tls.client_certs.push((abs(s.value()), None)),
                        Value::Array(pair) => {
                            let p: Vec<&str> = pair.iter().filter_map(Value::as_str).collect();
                            if p.len() != 2 || pair.len() != 2 {
                                return Err(loc.err(
                                    v.span(),
                                    format!("{what}client: a pair must be [certificate, key], two strings"),
                                ));
                            }
                            e.tls.client_certs.push((abs(p[0]), Some(abs(p[1]))));
                        }
                        _ => return Err(loc.err(v.span(), msg)),
                    }
                }
            }
            _ => return Err(loc.err(span, msg)),
        }
    }
    if let Some(item) = section.get("skip_verify") {
        e.tls.skip_verify = item.as_bool().ok_or_else(|| {
            loc.err(
                span_of(section, "skip_verify", item),
                format!("{what}skip_verify: expected true or false"),
            )
        })?;
    }
    if let Some(item) = section.get("override_path") {
        // Type checked in parse_endpoint for entries with a URL; the root entry without
        // `server` has no path to override.
        e.override_path = item.as_bool().ok_or_else(|| {
            loc.err(
                span_of(section, "override_path", item),
                format!("{what}override_path: expected true or false"),
            )
        })?;
    }
    if let Some(item) = section.get("header") {
        let span = span_of(section, "header", item);
        let t = item.as_table_like().ok_or_else(|| {
            loc.err(
                span,
                format!("{what}header: expected a table of name = value(s)"),
            )
        })?;
        for (name, v) in t.iter() {
            let vs = strings(
                v,
                span_of(t, name, v),
                loc,
                &format!("{what}header {name:?}"),
            )?;
            e.headers.push((name.to_string(), vs));
        }
    }
    if let Some(item) = section.get("dial_timeout") {
        let span = span_of(section, "dial_timeout", item);
        let s = item.as_str().ok_or_else(|| {
            loc.err(
                span.clone(),
                format!("{what}dial_timeout: expected a duration string like \"3s\""),
            )
        })?;
        e.dial_timeout = Some(
            parse_go_duration(s)
                .map_err(|m| loc.err(span, format!("{what}dial_timeout {s:?}: {m}")))?,
        );
    }
    Ok(e)
}

/// A string or an array of strings.
fn strings(
    item: &Item,
    span: Option<Range<usize>>,
    loc: &Located<'_>,
    what: &str,
) -> Result<Vec<String>, HostsError> {
    let msg = || format!("{what}: expected a string or an array of strings");
    match item.as_value() {
        Some(Value::String(s)) => Ok(vec![s.value().clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| loc.err(v.span(), msg()))
            })
            .collect(),
        _ => Err(loc.err(span, msg())),
    }
}

/// Go's `time.ParseDuration` (containerd parses `dial_timeout` with it): a sequence of
/// decimal numbers with units ns, us (µs), ms, s, m, h, e.g. `"1m30s"`, `"500ms"`, `"1.5s"`.
/// Written by hand: the Go syntax is what hosts.toml files contain, and no crate parses it
/// exactly (humantime accepts a different set of units and spaces).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err("must not be negative".into());
    }
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (ns, us, ms, s, m or h)")?;
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("bad number {:?}", &rest[..n]))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} (ns, us, ms, s, m or h)")),
        };
        total += num * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
