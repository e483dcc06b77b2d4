//! The client side of the remote API (berthctl's `--remote`, phase 2): a TLS 1.3 connection
//! to a node with the fleet CA, the client's certificate and key, checked against the node
//! name the client meant, handed to ttrpc as its transport.
//!
//! ttrpc 0.10's async client runs over any `AsyncRead + AsyncWrite` (`Socket::new`), so the
//! TLS stream is the ttrpc socket itself: no local relay or socketpair is needed.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
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
    let tls = connect_tls(address, node, creds, timeout).await?;
    Ok(ttrpc::r#async::Client::new(
        ttrpc::r#async::transport::Socket::new(tls),
    ))
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
