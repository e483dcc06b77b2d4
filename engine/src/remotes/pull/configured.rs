//! A pull as berthd runs it for a client: endpoints and credentials come from berthd's live
//! registry configuration ([`LiveRegistry`]) at the start of every pull — the certs.d
//! `hosts.toml` files and the docker `config.json` are read again each time, and a reload
//! (SIGHUP, `berthctl config reload`) applies to the next pull, so editing them needs no
//! restart. The core of the Pull service; [`super::pull`] is the pipeline itself.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::super::auth::{Credential, Credentials, RequestAuth};
use super::super::client::ClientOptions;
use super::super::config::{Credentials as RegistryCredentials, LiveRegistry};
use super::super::RegistryHost;
use super::{ImageRef, Progress, PullError, PullOptions, PullReport};
use crate::snapshots::Snapshotters;
use crate::store::Store;

/// What a client asks to pull.
#[derive(Debug, Clone, Default)]
pub struct PullRequest {
    /// The image reference.
    pub reference: String,
    /// `os/arch[/variant]`; empty: linux/amd64.
    pub platform: String,
    /// Snapshotter to unpack into (`""`: the default).
    pub snapshotter: String,
    /// Fetch only, do not unpack.
    pub no_unpack: bool,
    /// Layers downloaded at once; 0: [`super::DEFAULT_CONCURRENT_DOWNLOADS`].
    pub max_concurrent_downloads: usize,
    /// Credentials for this pull only, over the configured ones (CRI `AuthConfig`).
    pub auth: Option<RequestAuth>,
}

/// Pulls with berthd's store, snapshotters and live registry settings.
pub struct Puller {
    /// Content store and metadata.
    pub storage: Arc<Store>,
    /// Loaded snapshotters.
    pub snapshotters: Arc<Snapshotters>,
    /// berthd's registry configuration in force: hosts, credentials.
    pub registry: LiveRegistry,
    /// The docker-style config.json used when the configuration names none
    /// (`<root>/registry/config.json`; absent = no credentials from a file).
    pub default_docker_config: PathBuf,
    /// Timeouts and the CA bundle.
    pub client: ClientOptions,
}

/// A pull whose request was checked and whose endpoints and credentials were read; it runs
/// with [`Planned::run`].
pub struct Planned {
    storage: Arc<Store>,
    snapshotters: Arc<Snapshotters>,
    reference: String,
    hosts: Vec<RegistryHost>,
    credentials: Credentials,
    opts: PullOptions,
}

impl Puller {
    /// Checks `req` and reads the settings in force: endpoints for the reference's
    /// registry, configured credentials and the docker config.json. Nothing is fetched yet,
    /// so a bad request or configuration fails before any progress is reported.
    pub fn plan(&self, req: &PullRequest) -> Result<Planned, PullError> {
        let image_ref: ImageRef = req.reference.parse()?;
        let platform =
            crate::transfer::parse_platform(&req.platform).map_err(PullError::Platform)?;
        let cfg = self.registry.current();
        let mut configured: HashMap<String, Credential> = HashMap::new();
        for host in cfg.auths.keys() {
            match cfg.credentials_for(host)? {
                Some(RegistryCredentials::Basic { username, password }) => {
                    configured.insert(host.clone(), Credential::Basic { username, password });
                }
                Some(RegistryCredentials::IdentityToken(t)) => {
                    configured.insert(host.clone(), Credential::IdentityToken(t));
                }
                None => {}
            }
        }
        let docker_config = cfg
            .config_json
            .clone()
            .unwrap_or_else(|| self.default_docker_config.clone());
        let credentials =
            Credentials::load(Some(&docker_config), &configured)?.with_request(req.auth.clone());
        let hosts: Vec<RegistryHost> = cfg.endpoints_for(&image_ref.registry)?;
        let opts = PullOptions {
            platform,
            snapshotter: (!req.no_unpack).then(|| req.snapshotter.clone()),
            max_concurrent_downloads: match req.max_concurrent_downloads {
                0 => super::DEFAULT_CONCURRENT_DOWNLOADS,
                n => n,
            },
            client: self.client.clone(),
        };
        Ok(Planned {
            storage: self.storage.clone(),
            snapshotters: self.snapshotters.clone(),
            reference: req.reference.clone(),
            hosts,
            credentials,
            opts,
        })
    }
}

impl Planned {
    /// Runs the pull into namespace `ns`, reporting progress on `progress`.
    pub async fn run(
        self,
        ns: &str,
        progress: Option<UnboundedSender<Progress>>,
    ) -> Result<PullReport, PullError> {
        super::pull(
            self.storage,
            self.snapshotters,
            ns,
            &self.reference,
            &self.hosts,
            Arc::new(self.credentials),
            self.opts,
            progress,
        )
        .await
    }
}
