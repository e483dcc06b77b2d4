//! The client side of the remote API (berthctl's `--remote`, phase 2): a TLS 1.3 connection
//! to a node with the fleet CA, the client's certificate and key, checked against the node
//! name the client meant, handed to ttrpc as its transport.
//!
//! ttrpc 0.10's async client runs over any `AsyncRead + AsyncWrite` (`Socket::new`), so the
//! TLS stream is the ttrpc socket itself: no local relay or socketpair is needed.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::DEFAULT_PORT;
use crate::tls::{client_config, Credentials, TlsError};

/// Errors connecting to a node.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The node name is no DNS name or IP address.
    #[error("{0:?} is not a valid node name (a DNS name or an IP address)")]
    Name(String),
    /// The client's credentials are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// TCP connection failed.
    #[error("cannot connect to {address}")]
    Tcp {
        /// Where.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed: the node's certificate is not for `node`, not from the
    /// fleet CA, expired; or the node refused the client's certificate.
    #[error("TLS handshake with {node} at {address} failed")]
    Handshake {
        /// The name checked.
        node: String,
        /// Where.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Nothing answered in time.
    #[error("connecting to {address} timed out after {timeout:?}")]
    Timeout {
        /// Where.
        address: String,
        /// The bound.
        timeout: Duration,
    },
}

/// `host` or `host:port` with berth's default port added when none is given.
pub fn with_default_port(address: &str) -> String {
    let has_port = if address.starts_with('[') {
        address.contains("]:")
    } else {
        address.matches(':').count() == 1
    };
    if has_port {
        address.to_string()
    } else if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{DEFAULT_PORT}")
    } else {
        format!("{address}:{DEFAULT_PORT}")
    }
}

/// The TLS stream to `node` at `address` (`host[:port]`): TLS 1.3, the node's certificate
/// verified against the fleet CA of `creds` and against `node` (a DNS name or an IP address
/// in its SANs), the client's certificate offered. All within `timeout`.
pub async fn connect_tls(
    address: &str,
    node: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
    let name =
        ServerName::try_from(node.to_string()).map_err(|_| ConnectError::Name(node.into()))?;
    let cfg: Arc<rustls::ClientConfig> = client_config(creds)?;
    let address = with_default_port(address);
    let attempt = async {
        let tcp = TcpStream::connect(&address)
            .await
            .map_err(|source| ConnectError::Tcp {
                address: address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Handshake {
                node: node.to_string(),
                address: address.clone(),
                source,
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout {
            address: address.clone(),
            timeout,
        })?
}

/// A ttrpc client over [`connect_tls`]: every generated client (`VersionClient::new(c)`, …)
/// works on it as on a local socket. Must be called inside a tokio runtime.
pub async fn connect(
    address: &str,
    node: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<ttrpc::r#async::Client, ConnectError> {
    Ok(connect_watched(address, node, creds, timeout).await?.0)
}

/// [`connect`], with the transport's first error kept in a [`Refusal`]: in TLS 1.3 the
/// client's handshake is over before the node has judged the client's certificate, so a
/// refused certificate shows up as a failed read of the first call — which ttrpc reports
/// only as a broken connection. The refusal keeps the node's words (`received fatal alert:
/// CertificateExpired`) for the caller's error message ([`Refusal::describe`]).
pub async fn connect_watched(
    address: &str,
    node: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<(ttrpc::r#async::Client, Refusal), ConnectError> {
    let tls = connect_tls(address, node, creds, timeout).await?;
    let refusal = Refusal::default();
    let watched = Watched {
        inner: tls,
        refusal: refusal.clone(),
    };
    Ok((
        ttrpc::r#async::Client::new(ttrpc::r#async::transport::Socket::new(watched)),
        refusal,
    ))
}

/// The first transport error of a connection (see [`connect_watched`]).
#[derive(Debug, Clone, Default)]
pub struct Refusal(Arc<Mutex<Option<String>>>);

impl Refusal {
    fn record(&self, e: &std::io::Error) {
        if let Ok(mut slot) = self.0.lock() {
            slot.get_or_insert_with(|| e.to_string());
        }
    }

    /// The error, when there was one.
    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|s| s.clone())
    }

    /// When the node refused the client's certificate: a sentence saying so, the alert and
    /// what it usually means.
    pub fn describe(&self) -> Option<String> {
        let text = self.get()?;
        let alert = text
            .split("received fatal alert: ")
            .nth(1)?
            .trim()
            .to_string();
        Some(format!(
            "the node refused this client's certificate (TLS alert {alert}: {})",
            alert_meaning(&alert)
        ))
    }
}

/// What a TLS alert from the node usually means for a berth client.
pub fn alert_meaning(alert: &str) -> &'static str {
    match alert {
        "UnknownCA" | "BadCertificate" => {
            "it is not from this node's fleet CA, or the node has another CA"
        }
        "CertificateExpired" => {
            "it is expired, or not yet valid at the node's clock (see the clock floor in docs/remote-api.md)"
        }
        "UnsupportedCertificate" => "it is not a client certificate (no clientAuth usage)",
        "CertificateRequired" => "no client certificate was offered (--cert and --key)",
        "CertificateRevoked" => "it was revoked",
        _ => "see the node's log (`berthctl system log -s berth-apid`) for its reason",
    }
}

/// A transport that keeps its first error in a [`Refusal`].
struct Watched<S> {
    inner: S,
    refusal: Refusal,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &r {
            self.refusal.record(e);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_port_is_added_only_when_missing() {
        assert_eq!(with_default_port("node-a"), "node-a:7443");
        assert_eq!(with_default_port("node-a:9"), "node-a:9");
        assert_eq!(with_default_port("10.0.0.1"), "10.0.0.1:7443");
        assert_eq!(with_default_port("::1"), "[::1]:7443");
        assert_eq!(with_default_port("[::1]:9"), "[::1]:9");
    }
}
