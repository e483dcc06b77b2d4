//! The OCI distribution API client: manifests by tag or digest and blobs (with `Range`
//! resume) from an ordered list of endpoints, falling back to the next endpoint on any
//! failure.
//!
//! A thin client over `reqwest` (hyper + rustls, hickory name resolution) with one HTTP
//! client per endpoint, because TLS trust, client certificates and `skip_verify` are per
//! endpoint (docs/registry-pull.md says why not `oci-client`). Every request is bounded:
//! connecting by the endpoint's `dial_timeout`, the response headers and each chunk of a
//! body by the stall timeout, so a mirror that accepts connections and never answers, or
//! stops sending half-way through a blob, costs seconds before the next endpoint is tried.
//! A blob interrupted on one endpoint continues on the next from the byte it reached.
//!
//! Errors name the URL that failed and why; when every endpoint failed the error lists each
//! attempt in order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::auth::{self, Credential, Credentials};
use super::tls::{self, TlsError};
use super::RegistryHost;
use crate::content::{Digest, Writer};

/// Accept header for manifests: OCI and Docker manifests and indexes.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Default time allowed to establish a connection when the endpoint sets none.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time without a byte (response headers, or the next chunk of a body) before an
/// endpoint is given up on.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Manifests and configs are read into memory: refuse anything larger.
pub const MAX_DOCUMENT: u64 = crate::images::MAX_DOCUMENT_SIZE;
/// Bytes gathered before a write into the content store (each write also updates the
/// ingest's timestamp file, so tiny writes are expensive).
const WRITE_CHUNK: usize = 1 << 20;

/// Client settings that are not per endpoint.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time without progress before falling back to the next endpoint.
    pub stall_timeout: Duration,
    /// Connection timeout for endpoints without their own `dial_timeout`.
    pub dial_timeout: Duration,
    /// The system CA bundle (used when it exists).
    pub ca_bundle: PathBuf,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            ca_bundle: PathBuf::from(tls::SYSTEM_CA_BUNDLE),
        }
    }
}

/// Errors of the distribution client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// One request to one endpoint failed.
    #[error("{url}: {reason}")]
    Attempt {
        /// The full request URL.
        url: String,
        /// What failed (status, certificate error, timeout…), with its causes.
        reason: String,
    },
    /// Every endpoint that may serve the request failed.
    #[error("{what}: {} endpoint(s) tried, all failed: {}", attempts.len(), list(attempts))]
    AllFailed {
        /// What was fetched (`manifest docker.io/library/busybox:latest`, `blob sha256:…`).
        what: String,
        /// Each attempt in order.
        attempts: Vec<ClientError>,
    },
    /// No endpoint has the capability the request needs.
    #[error("{what}: none of the {count} endpoint(s) has the {capability} capability")]
    NoEndpoint {
        /// What was fetched.
        what: String,
        /// `resolve` or `pull`.
        capability: &'static str,
        /// Endpoints configured.
        count: usize,
    },
    /// An endpoint's TLS settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// reqwest refused to build a client for an endpoint.
    #[error("endpoint {endpoint}: cannot build its HTTP client")]
    Build {
        /// The endpoint's API root.
        endpoint: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// Writing into the content store failed.
    #[error("blob {digest}: content store")]
    Store {
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<crate::content::Error>,
    },
}

impl ClientError {
    /// Whether this is a manifest every endpoint tried answered `404` for: the image (or
    /// tag) does not exist there, as opposed to a registry that could not be reached.
    pub fn manifest_not_found(&self) -> bool {
        match self {
            ClientError::AllFailed { what, attempts } => {
                what.starts_with("manifest ")
                    && !attempts.is_empty()
                    && attempts.iter().all(|a| {
                        matches!(a, ClientError::Attempt { reason, .. } if reason.starts_with("404"))
                    })
            }
            _ => false,
        }
    }
}

fn list(attempts: &[ClientError]) -> String {
    attempts
        .iter()
        .enumerate()
        .map(|(i, a)| format!("[{}] {a}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The error and its causes on one line (reqwest hides the interesting part — "connection
/// refused", "invalid peer certificate: UnknownIssuer" — in its sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn describe_send_error(e: &reqwest::Error, host: &str) -> String {
    let text = chain(e);
    if text.contains("certificate") || text.contains("Certificate") {
        format!("TLS certificate error for {host}: {text}")
    } else if e.is_connect() {
        format!("cannot connect to {host}: {text}")
    } else {
        text
    }
}

/// A fetched document.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The bytes (digest-verified when fetched by digest).
    pub bytes: Vec<u8>,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The `Content-Type` the registry sent.
    pub media_type: String,
    /// The API root that served it.
    pub endpoint: String,
}

/// Which endpoints a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Resolve,
    Pull,
}

struct Endpoint {
    host: RegistryHost,
    http: reqwest::Client,
}

/// A distribution client for one repository over an ordered list of endpoints.
pub struct RegistryClient {
    endpoints: Vec<Endpoint>,
    repository: String,
    credentials: Arc<Credentials>,
    opts: ClientOptions,
    /// `Authorization` values obtained per endpoint host during this client's life.
    tokens: Mutex<HashMap<String, String>>,
    /// One line per request: URL, outcome, duration — the "which endpoints were tried".
    log: Mutex<Vec<String>>,
    /// Endpoints (by index) that failed other than with a 404 during this client's life:
    /// later requests try them last, so a dead mirror costs its timeout once per pull rather
    /// than once per blob.
    demoted: Mutex<std::collections::HashSet<usize>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("repository", &self.repository)
            .field(
                "endpoints",
                &self
                    .endpoints
                    .iter()
                    .map(|e| e.host.base_url())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for `repository` (`library/busybox`) over `hosts`, tried in order.
    pub fn new(
        hosts: &[RegistryHost],
        repository: &str,
        credentials: Arc<Credentials>,
        opts: ClientOptions,
    ) -> Result<Self, ClientError> {
        let mut endpoints = Vec::with_capacity(hosts.len());
        for host in hosts {
            let tls = tls::client_config(host, &opts.ca_bundle)?;
            let http = reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .connect_timeout(host.dial_timeout.unwrap_or(opts.dial_timeout))
                // Air-gapped nodes name their endpoints explicitly: a proxy from the
                // environment would silently route around the configured mirrors.
                .no_proxy()
                .hickory_dns(true)
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|source| ClientError::Build {
                    endpoint: host.base_url(),
                    source,
                })?;
            endpoints.push(Endpoint {
                host: host.clone(),
                http,
            });
        }
        Ok(Self {
            endpoints,
            repository: repository.to_string(),
            credentials,
            opts,
            tokens: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            demoted: Mutex::new(Default::default()),
        })
    }

    /// The request log so far: one line per request with its URL, outcome and duration.
    pub fn attempts(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    fn note(&self, line: String) {
        tracing::info!("{line}");
        if let Ok(mut l) = self.log.lock() {
            l.push(line);
        }
    }

    /// Endpoints with the capability, in configured order, demoted ones last.
    fn usable(&self, need: Need) -> Vec<(usize, &Endpoint)> {
        let demoted = self.demoted.lock().map(|d| d.clone()).unwrap_or_default();
        let mut out: Vec<(usize, &Endpoint)> = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| match need {
                Need::Resolve => e.host.capabilities.resolve,
                Need::Pull => e.host.capabilities.pull,
            })
            .collect();
        // Stable: configured order within the live and within the demoted endpoints.
        out.sort_by_key(|(i, _)| demoted.contains(i));
        out
    }

    /// Records a failure of endpoint `index`: anything but "not found" demotes it.
    fn failed(&self, index: usize, reason: &str) {
        if !reason.starts_with("404") {
            if let Ok(mut d) = self.demoted.lock() {
                d.insert(index);
            }
        }
    }

    fn url(&self, ep: &Endpoint, kind: &str, reference: &str) -> String {
        let mut url = format!(
            "{}/{}/{kind}/{reference}",
            ep.host.base_url(),
            self.repository
        );
        if let Some(ns) = &ep.host.namespace {
            url.push_str("?ns=");
            url.push_str(ns);
        }
        url
    }

    /// Fetches a manifest or index by tag (resolve-capable endpoints) or digest
    /// (pull-capable endpoints; the bytes are verified against it).
    pub async fn fetch_manifest(&self, reference: &str) -> Result<Fetched, ClientError> {
        let expected: Option<Digest> = reference.parse().ok();
        let need = if expected.is_some() {
            Need::Pull
        } else {
            Need::Resolve
        };
        let what = format!("manifest {}:{reference}", self.repository);
        self.fetch_document(
            need,
            "manifests",
            reference,
            expected,
            Some(MANIFEST_ACCEPT),
            &what,
        )
        .await
    }

    /// Fetches a small blob (a config) into memory, verified against `digest`.
    pub async fn fetch_blob_bytes(&self, digest: &Digest) -> Result<Fetched, ClientError> {
        let what = format!("blob {digest}");
        self.fetch_document(
            Need::Pull,
            "blobs",
            &digest.to_string(),
            Some(*digest),
            None,
            &what,
        )
        .await
    }

    async fn fetch_document(
        &self,
        need: Need,
        kind: &str,
        reference: &str,
        expected: Option<Digest>,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Fetched, ClientError> {
        let usable = self.usable(need);
        if usable.is_empty() {
            return Err(ClientError::NoEndpoint {
                what: what.into(),
                capability: if need == Need::Resolve {
                    "resolve"
                } else {
                    "pull"
                },
                count: self.endpoints.len(),
            });
        }
        let mut attempts = Vec::new();
        for (index, ep) in usable {
            let url = self.url(ep, kind, reference);
            let started = Instant::now();
            match self.fetch_document_from(ep, &url, expected, accept).await {
                Ok(f) => {
                    self.note(format!(
                        "GET {url}: ok, {} bytes in {:.2}s",
                        f.bytes.len(),
                        started.elapsed().as_secs_f64()
                    ));
                    return Ok(f);
                }
                Err(reason) => {
                    self.failed(index, &reason);
                    self.note(format!(
                        "GET {url}: failed after {:.2}s: {reason}",
                        started.elapsed().as_secs_f64()
                    ));
                    attempts.push(ClientError::Attempt { url, reason });
                }
            }
        }
        Err(ClientError::AllFailed {
            what: what.into(),
            attempts,
        })
    }

    async fn fetch_document_from(
        &self,
        ep: &Endpoint,
        url: &str,
        expected: Option<Digest>,
        accept: Option<&str>,
    ) -> Result<Fetched, String> {
        let mut resp = self.get(ep, url, accept, 0).await?;
        if let Some(len) = resp.content_length() {
            if len > MAX_DOCUMENT {
                return Err(format!(
                    "{len} bytes exceeds the {MAX_DOCUMENT}-byte limit for documents"
                ));
            }
        }
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let mut bytes = Vec::new();
        while let Some(chunk) = self.next_chunk(&mut resp).await? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > MAX_DOCUMENT {
                return Err(format!(
                    "more than the {MAX_DOCUMENT}-byte limit for documents"
                ));
            }
        }
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected.or(header_digest) {
            if expected != digest {
                return Err(format!(
                    "content digest mismatch: expected {expected}, received {digest}"
                ));
            }
        }
        Ok(Fetched {
            bytes,
            digest,
            media_type,
            endpoint: ep.host.base_url(),
        })
    }

    async fn next_chunk(&self, resp: &mut reqwest::Response) -> Result<Option<Vec<u8>>, String> {
        match tokio::time::timeout(self.opts.stall_timeout, resp.chunk()).await {
            Err(_) => Err(format!(
                "stalled: no data for {}s",
                self.opts.stall_timeout.as_secs_f64()
            )),
            Ok(Err(e)) => Err(format!("reading the body: {}", chain(&e))),
            Ok(Ok(c)) => Ok(c.map(|b| b.to_vec())),
        }
    }

    /// One GET with the endpoint's headers and the auth handshake; non-2xx is an error.
    async fn get(
        &self,
        ep: &Endpoint,
        url: &str,
        accept: Option<&str>,
        range_from: u64,
    ) -> Result<reqwest::Response, String> {
        let key = ep.host.host.clone();
        let mut authorization = self.tokens.lock().ok().and_then(|t| t.get(&key).cloned());
        for round in 0..2 {
            let mut req = ep.http.get(url);
            for (name, values) in &ep.host.headers {
                for v in values {
                    req = req.header(name.as_str(), v.as_str());
                }
            }
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if range_from > 0 {
                req = req.header(reqwest::header::RANGE, format!("bytes={range_from}-"));
            }
            if let Some(a) = &authorization {
                req = req.header(reqwest::header::AUTHORIZATION, a.as_str());
            }
            let resp = match tokio::time::timeout(self.opts.stall_timeout, req.send()).await {
                Err(_) => {
                    return Err(format!(
                        "no response within {}s",
                        self.opts.stall_timeout.as_secs_f64()
                    ))
                }
                Ok(Err(e)) => return Err(describe_send_error(&e, &key)),
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && round == 0 {
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge);
                let Some(challenge) = challenge else {
                    return Err(format!("{status} without a WWW-Authenticate challenge"));
                };
                let value = self.authenticate(ep, &challenge).await?;
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert(key.clone(), value.clone());
                }
                authorization = Some(value);
                continue;
            }
            if !status.is_success() {
                let mut reason = status.to_string();
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    match self.credentials.for_host(&key) {
                        Some((_, source)) => reason.push_str(&format!(
                            ": the registry rejected the credentials for {key} (from {source})"
                        )),
                        None => reason.push_str(&format!(": no credentials for {key}")),
                    }
                }
                return Err(reason);
            }
            return Ok(resp);
        }
        Err("authentication did not succeed".into())
    }

    /// Answers a challenge: the `Authorization` value to retry with.
    async fn authenticate(
        &self,
        ep: &Endpoint,
        challenge: &auth::Challenge,
    ) -> Result<String, String> {
        let host = &ep.host.host;
        let cred = self.credentials.for_host(host);
        match challenge.scheme.as_str() {
            "basic" => match cred {
                Some((Credential::Basic { username, password }, _)) => {
                    Ok(auth::basic_header(username, password))
                }
                Some((Credential::IdentityToken(_) | Credential::RegistryToken(_), source)) => {
                    Err(format!(
                        "401 Unauthorized: the registry asks for basic auth but the credential for {host} (from {source}) is a token"
                    ))
                }
                None => Err(format!(
                    "401 Unauthorized: the registry asks for basic auth and there are no credentials for {host}"
                )),
            },
            "bearer" => {
                if let Some((Credential::RegistryToken(t), _)) = cred {
                    return Ok(format!("Bearer {t}"));
                }
                let realm = challenge
                    .params
                    .get("realm")
                    .ok_or("401 Unauthorized: bearer challenge without a realm")?;
                let scope = challenge
                    .params
                    .get("scope")
                    .cloned()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
                let mut query: Vec<(&str, String)> = vec![("scope", scope)];
                if let Some(service) = challenge.params.get("service") {
                    query.push(("service", service.clone()));
                }
                let req = match cred {
                    Some((Credential::IdentityToken(token), _)) => {
                        let mut form = query.clone();
                        form.push(("grant_type", "refresh_token".into()));
                        form.push(("refresh_token", token.clone()));
                        form.push(("client_id", "berth".into()));
                        let body = form
                            .iter()
                            .map(|(k, v)| format!("{k}={}", urlencode(v)))
                            .collect::<Vec<_>>()
                            .join("&");
                        ep.http
                            .post(realm)
                            .header(
                                reqwest::header::CONTENT_TYPE,
                                "application/x-www-form-urlencoded",
                            )
                            .body(body)
                    }
                    Some((Credential::Basic { username, password }, _)) => ep
                        .http
                        .get(realm)
                        .query(&query)
                        .header(
                            reqwest::header::AUTHORIZATION,
                            auth::basic_header(username, password),
                        ),
                    Some((Credential::RegistryToken(_), _)) | None => {
                        ep.http.get(realm).query(&query)
                    }
                };
                let resp = tokio::time::timeout(self.opts.stall_timeout, req.send())
                    .await
                    .map_err(|_| format!("token endpoint {realm}: no response"))?
                    .map_err(|e| {
                        format!("token endpoint {realm}: {}", describe_send_error(&e, realm))
                    })?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(match cred {
                        Some((_, source)) => format!(
                            "token endpoint {realm}: {status}: the credentials for {host} (from {source}) were rejected"
                        ),
                        None => format!("token endpoint {realm}: {status}: no credentials for {host}"),
                    });
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: Option<String>,
                    #[serde(default)]
                    access_token: Option<String>,
                }
                let body = tokio::time::timeout(self.opts.stall_timeout, resp.bytes())
                    .await
                    .map_err(|_| format!("token endpoint {realm}: stalled"))?
                    .map_err(|e| format!("token endpoint {realm}: {}", chain(&e)))?;
                let t: Token = serde_json::from_slice(&body)
                    .map_err(|e| format!("token endpoint {realm}: not a token response: {e}"))?;
                let token = t
                    .token
                    .or(t.access_token)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("token endpoint {realm}: no token in the response"))?;
                Ok(format!("Bearer {token}"))
            }
            other => Err(format!(
                "401 Unauthorized: unsupported authentication scheme {other:?}"
            )),
        }
    }

    /// Streams blob `digest` (`size` bytes) into `writer`, resuming at the writer's offset
    /// (an interrupted earlier pull, or an endpoint that failed half-way) with a `Range`
    /// request. `progress(offset, endpoint)` is called after every write. The digest is
    /// checked once the last byte is in (the writer hashes as it writes); the caller
    /// commits. Returns the API root that delivered the last byte.
    pub async fn fetch_blob(
        &self,
        digest: &Digest,
        size: u64,
        writer: &mut Writer,
        progress: &mut (dyn FnMut(u64, &str) + Send),
    ) -> Result<String, ClientError> {
        let what = format!("blob {digest}");
        let usable = self.usable(Need::Pull);
        if usable.is_empty() {
            return Err(ClientError::NoEndpoint {
                what,
                capability: "pull",
                count: self.endpoints.len(),
            });
        }
        let mut attempts = Vec::new();
        for (index, ep) in usable {
            let url = self.url(ep, "blobs", &digest.to_string());
            let started = Instant::now();
            let from = writer.offset();
            let endpoint = ep.host.base_url();
            let result = self
                .fetch_blob_from(ep, &url, size, writer, &mut |o| progress(o, &endpoint))
                .await;
            let got = writer.offset().saturating_sub(from);
            match result {
                Ok(()) => {
                    let actual = writer.digest();
                    if actual != *digest {
                        let reason = format!(
                            "content digest mismatch: expected {digest}, received {actual}"
                        );
                        self.note(format!("GET {url}: {reason}"));
                        attempts.push(ClientError::Attempt { url, reason });
                        return Err(ClientError::AllFailed { what, attempts });
                    }
                    self.note(format!(
                        "GET {url}: ok, {got} bytes from offset {from} in {:.2}s",
                        started.elapsed().as_secs_f64()
                    ));
                    return Ok(endpoint);
                }
                Err(Fail::Store(source)) => {
                    return Err(ClientError::Store {
                        digest: *digest,
                        source: Box::new(source),
                    })
                }
                Err(Fail::Remote(reason)) => {
                    self.failed(index, &reason);
                    self.note(format!(
                        "GET {url}: failed after {:.2}s ({got} bytes from offset {from}): {reason}",
                        started.elapsed().as_secs_f64()
                    ));
                    attempts.push(ClientError::Attempt { url, reason });
                }
            }
        }
        Err(ClientError::AllFailed { what, attempts })
    }

    async fn fetch_blob_from(
        &self,
        ep: &Endpoint,
        url: &str,
        size: u64,
        writer: &mut Writer,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), Fail> {
        let start = writer.offset();
        if start == size {
            return Ok(());
        }
        if start > size {
            return Err(Fail::Remote(format!(
                "the ingest holds {start} bytes, more than the blob's {size}"
            )));
        }
        let mut resp = self.get(ep, url, None, start).await.map_err(Fail::Remote)?;
        // 206: the rest from `start`. 200: the whole blob (the server ignored Range): skip
        // what the ingest already has.
        let mut skip = if resp.status() == reqwest::StatusCode::PARTIAL_CONTENT {
            0
        } else {
            start
        };
        let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
        let flush = |buf: &mut Vec<u8>, writer: &mut Writer| -> Result<(), Fail> {
            if !buf.is_empty() {
                writer.write(buf).map_err(Fail::Store)?;
                buf.clear();
            }
            Ok(())
        };
        loop {
            let chunk = match self.next_chunk(&mut resp).await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(reason) => {
                    // Keep what arrived: the next endpoint continues from there.
                    flush(&mut buf, writer)?;
                    return Err(Fail::Remote(reason));
                }
            };
            let mut data = &chunk[..];
            if skip > 0 {
                let n = (skip as usize).min(data.len());
                data = &data[n..];
                skip -= n as u64;
            }
            if writer.offset() + (buf.len() + data.len()) as u64 > size {
                return Err(Fail::Remote(format!(
                    "sent more than the descriptor's {size} bytes"
                )));
            }
            buf.extend_from_slice(data);
            if buf.len() >= WRITE_CHUNK {
                flush(&mut buf, writer)?;
                progress(writer.offset());
            }
        }
        flush(&mut buf, writer)?;
        progress(writer.offset());
        if writer.offset() != size {
            return Err(Fail::Remote(format!(
                "the body ended at {} of {size} bytes",
                writer.offset()
            )));
        }
        Ok(())
    }
}

enum Fail {
    Remote(String),
    Store(crate::content::Error),
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
