//! Client side of berth's ttrpc APIs: connecting with a timeout, bounding each call, and the
//! errors a client reports. Used by berthctl, init's readiness check and tests. [`stdio`] is
//! the client end of container stdio over the API (`Tasks.Attach`).

use std::time::Duration;

pub mod stdio;
mod storage;
pub use storage::StorageClient;

use crate::proto::{introspection, introspection_ttrpc, version, version_ttrpc};

/// Errors talking to berthd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to berthd at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: ttrpc::Error,
    },
    #[error("{method} call to berthd at {address} failed: {}", describe(source))]
    Call {
        address: String,
        method: &'static str,
        #[source]
        source: ttrpc::Error,
    },
    #[error("{method} call to berthd at {address} timed out after {timeout:?}")]
    Timeout {
        address: String,
        method: &'static str,
        timeout: Duration,
    },
    #[error("cannot start an async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

pub use crate::address::normalize_address;
use crate::errdefs::describe;

/// Awaits `fut` (one ttrpc call named `method` to `address`) for at most `timeout`, mapping
/// both failure kinds to [`ClientError`]. Shared by every client of berthd's API.
pub async fn bounded<T>(
    address: &str,
    timeout: Duration,
    method: &'static str,
    fut: impl std::future::Future<Output = ttrpc::Result<T>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(|source| ClientError::Call {
            address: address.to_string(),
            method,
            source,
        }),
        Err(_) => Err(ClientError::Timeout {
            address: address.to_string(),
            method,
            timeout,
        }),
    }
}

/// Connects a ttrpc client to `address` (`unix:///path` or a path) within `timeout`: the one
/// connection routine of every berth client, whichever services it then uses.
pub async fn connect(
    address: &str,
    timeout: Duration,
) -> Result<ttrpc::r#async::Client, ClientError> {
    let address = normalize_address(address);
    match tokio::time::timeout(timeout, ttrpc::r#async::Client::connect(&address)).await {
        Ok(r) => r.map_err(|source| ClientError::Connect { address, source }),
        Err(_) => Err(ClientError::Timeout {
            address,
            method: "connect",
            timeout,
        }),
    }
}

/// A connected client of berthd's Version and Introspection services.
#[derive(Clone)]
pub struct Client {
    address: String,
    timeout: Duration,
    version: version_ttrpc::VersionClient,
    introspection: introspection_ttrpc::IntrospectionClient,
}

impl Client {
    /// Connects to berthd at `address` (`unix:///path` or a path); each call is bounded by
    /// `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Client, ClientError> {
        let inner = connect(address, timeout).await?;
        Ok(Self::over(inner, &normalize_address(address), timeout))
    }

    /// Over a connection made elsewhere (the remote API's TLS transport); `address` names it
    /// in errors.
    pub fn over(inner: ttrpc::r#async::Client, address: &str, timeout: Duration) -> Client {
        Client {
            version: version_ttrpc::VersionClient::new(inner.clone()),
            introspection: introspection_ttrpc::IntrospectionClient::new(inner),
            address: address.to_owned(),
            timeout,
        }
    }

    fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_timeout(self.timeout.as_nanos().min(i64::MAX as u128) as i64)
    }

    async fn bounded<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, ClientError> {
        crate::client::bounded(&self.address, self.timeout, method, fut).await
    }

    /// `Version`: the engine's (version, revision).
    pub async fn version(&self) -> Result<(String, String), ClientError> {
        let r = self
            .bounded(
                "Version",
                self.version
                    .version(self.ctx(), &version::VersionRequest::new()),
            )
            .await?;
        Ok((r.version, r.revision))
    }

    /// `Introspection.Plugins` with `type==`/`id==` filters.
    pub async fn plugins(
        &self,
        filters: Vec<String>,
    ) -> Result<Vec<introspection::Plugin>, ClientError> {
        let req = introspection::PluginsRequest {
            filters,
            ..Default::default()
        };
        let r = self
            .bounded("Plugins", self.introspection.plugins(self.ctx(), &req))
            .await?;
        Ok(r.plugins)
    }
}

/// Asks berthd for its version; returns (version, revision).
pub async fn version(address: &str, timeout: Duration) -> Result<(String, String), ClientError> {
    Client::connect(address, timeout).await?.version().await
}

/// Blocking [`version`], for callers without an async runtime (init's readiness check).
pub fn version_blocking(address: &str, timeout: Duration) -> Result<(String, String), ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClientError::Runtime)?;
    rt.block_on(version(address, timeout))
}
