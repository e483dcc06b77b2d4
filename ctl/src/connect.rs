//! The one way berthctl reaches its servers: [`channel`] makes every connection — to the
//! local sockets with [`berth_api::client::connect`] (the address normalised, connecting
//! bounded by `--timeout`), or to a node's remote API with [`berth_remote::client`] (mutual
//! TLS, the node's name checked; berthd's services and init's both go through it) — and the
//! clients are built on it:
//!
//! - [`client`] and [`storage`]: berth-api's clients of Version/Introspection and of the
//!   storage services (Namespaces, Content, Images, Leases, GC);
//! - [`Berthd`]: one connection to berthd for the services berth-api has no client of
//!   (Snapshots, Containers, Tasks, Events, Pull, Transfer, Registry, Config), with the
//!   contexts (namespace, deadline) and the call bounding every verb uses;
//! - [`Init`]: berth-init's control API (System), at `--init-address`.

use std::future::Future;
use std::time::Duration;

use berth_api::client::{bounded, connect, normalize_address, Client, ClientError, StorageClient};
use berth_api::proto::{
    config_ttrpc::ConfigClient, containers_ttrpc::ContainersClient, events_ttrpc::EventsClient,
    pull_ttrpc::PullClient, registry_ttrpc::RegistryClient, snapshots_ttrpc::SnapshotsClient,
    system_ttrpc::SystemClient, tasks_ttrpc::TasksClient, transfer_ttrpc::TransferClient,
};
use ttrpc::context::Context;

use crate::error::Error;
use crate::globals::Globals;

/// Which server a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// berthd (`--address`).
    Berthd,
    /// berth-init (`--init-address`).
    Init,
}

/// A connection to `server` and how errors name it: the local socket's address, or
/// `node-a (10.0.0.7:7443)` over the remote API (one port for both servers).
pub async fn channel(
    g: &Globals,
    server: Server,
) -> Result<(ttrpc::r#async::Client, String), Error> {
    if let Some(remote) = g.remote()? {
        let c = remote.connect(g.timeout()).await?;
        return Ok((c, remote.label()));
    }
    let address = match server {
        Server::Berthd => &g.address,
        Server::Init => &g.init_address,
    };
    let c = match connect(address, g.timeout()).await {
        Ok(c) => c,
        Err(e) if server == Server::Init => return Err(Error::init(e)),
        Err(e) => return Err(e.into()),
    };
    Ok((c, normalize_address(address)))
}

/// berthd's Version and Introspection services.
pub async fn client(g: &Globals) -> Result<Client, Error> {
    let (c, label) = channel(g, Server::Berthd).await?;
    Ok(Client::over(c, &label, g.timeout()))
}

/// berthd's storage services, in the namespace of `-n`.
pub async fn storage(g: &Globals) -> Result<StorageClient, Error> {
    let (c, label) = channel(g, Server::Berthd).await?;
    Ok(StorageClient::over(c, &label, g.timeout(), &g.namespace))
}

/// One connection to berthd, in one namespace.
pub struct Berthd {
    inner: ttrpc::r#async::Client,
    address: String,
    namespace: String,
    timeout: Duration,
}

impl Berthd {
    /// Connects to berthd at `--address`; calls name the namespace of `-n`.
    pub async fn connect(g: &Globals) -> Result<Self, Error> {
        let (inner, address) = channel(g, Server::Berthd).await?;
        Ok(Self {
            inner,
            address,
            namespace: g.namespace.clone(),
            timeout: g.timeout(),
        })
    }

    /// `--timeout`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A context with the namespace and the `--timeout` deadline.
    pub fn ctx(&self) -> Context {
        self.ctx_for(self.timeout)
    }

    /// A context with the `--timeout` deadline and no namespace, for the services that are
    /// not namespaced (Registry, Config): `-n` means nothing to them.
    pub fn plain_ctx(&self) -> Context {
        ttrpc::context::with_timeout(self.timeout.as_nanos().min(i64::MAX as u128) as i64)
    }

    /// A context with the namespace and a deadline of `timeout` (steps that take longer than
    /// a plain call: creating a container or a task).
    pub fn ctx_for(&self, timeout: Duration) -> Context {
        berth_api::keys::context(&self.namespace, timeout)
    }

    /// A context with the namespace and no deadline, for calls that last as long as their
    /// data or their process does (pulls, imports, waits, logs).
    pub fn stream_ctx(&self) -> Context {
        let mut ctx = self.ctx();
        ctx.timeout_nano = 0;
        ctx
    }

    /// Awaits one call named `method` for at most `--timeout` (berth-api's bounding and
    /// errors).
    pub async fn bounded<T>(
        &self,
        method: &'static str,
        fut: impl Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, Error> {
        Ok(bounded(&self.address, self.timeout, method, fut).await?)
    }

    /// The Snapshots service.
    pub fn snapshots(&self) -> SnapshotsClient {
        SnapshotsClient::new(self.inner.clone())
    }

    /// The Containers service.
    pub fn containers(&self) -> ContainersClient {
        ContainersClient::new(self.inner.clone())
    }

    /// The Tasks service.
    pub fn tasks(&self) -> TasksClient {
        TasksClient::new(self.inner.clone())
    }

    /// The Events service.
    pub fn events(&self) -> EventsClient {
        EventsClient::new(self.inner.clone())
    }

    /// The Pull service.
    pub fn pull(&self) -> PullClient {
        PullClient::new(self.inner.clone())
    }

    /// The Transfer service (import, export, views).
    pub fn transfer(&self) -> TransferClient {
        TransferClient::new(self.inner.clone())
    }

    /// The Registry service (hosts resolution).
    pub fn registry(&self) -> RegistryClient {
        RegistryClient::new(self.inner.clone())
    }

    /// The Config service.
    pub fn config(&self) -> ConfigClient {
        ConfigClient::new(self.inner.clone())
    }
}

/// A connection to berth-init's control API; its errors name berth-init.
pub struct Init {
    /// The System service.
    pub client: SystemClient,
    address: String,
    timeout: Duration,
}

impl Init {
    /// Connects to berth-init at `--init-address`.
    pub async fn connect(g: &Globals) -> Result<Self, Error> {
        let (inner, address) = channel(g, Server::Init).await?;
        Ok(Self {
            client: SystemClient::new(inner),
            address,
            timeout: g.timeout(),
        })
    }

    /// A context with the `--timeout` deadline.
    pub fn ctx(&self) -> Context {
        ttrpc::context::with_timeout(self.timeout.as_nanos().min(i64::MAX as u128) as i64)
    }

    /// Awaits one call named `method` for at most `--timeout`.
    pub async fn call<T>(
        &self,
        method: &'static str,
        fut: impl Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, Error> {
        bounded(&self.address, self.timeout, method, fut)
            .await
            .map_err(Error::init)
    }

    /// A failure of the stream of `method`, after it started.
    pub fn stream_error(&self, method: &'static str, source: ttrpc::Error) -> Error {
        Error::init(ClientError::Call {
            address: self.address.clone(),
            method,
            source,
        })
    }
}
