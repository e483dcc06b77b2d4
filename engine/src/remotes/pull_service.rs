//! The Pull ttrpc service: runs [`super::pull::pull`] in berthd and streams its progress.
//!
//! Endpoints and credentials come from berthd's live registry configuration
//! ([`LiveRegistry`]) at the start of every pull: the certs.d `hosts.toml` files and the docker
//! `config.json` are read again each time, and a reload (SIGHUP, `berthctl config reload`)
//! applies to the next pull, so editing them needs no restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::{ServerStreamSender, TtrpcContext};

use super::auth::{Credential, Credentials};
use super::client::ClientOptions;
use super::config::{Credentials as RegistryCredentials, LiveRegistry};
use super::pull::{self, ImageRef, PullError, PullOptions};
use super::RegistryHost;
use berth_api::proto::pull as pb;
use berth_api::proto::pull_ttrpc;
use crate::snapshots::service::Snapshotters;
use crate::storage_api::{namespace, Storage};

/// The service.
pub struct PullService {
    /// Content store and metadata.
    pub storage: Arc<Storage>,
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

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn to_ttrpc(e: &PullError) -> ttrpc::Error {
    let code = match e {
        PullError::Reference { .. } => ttrpc::Code::INVALID_ARGUMENT,
        PullError::Fetch { .. } => ttrpc::Code::UNAVAILABLE,
        PullError::Image { .. } | PullError::Unpack { .. } => ttrpc::Code::FAILED_PRECONDITION,
        PullError::Storage { .. } => ttrpc::Code::INTERNAL,
    };
    status(code, crate::metadata::chain(e))
}

fn progress_pb(p: &pull::Progress) -> pb::BlobProgress {
    pb::BlobProgress {
        kind: p.kind.to_string(),
        digest: p.digest.to_string(),
        size: p.size as i64,
        offset: p.offset as i64,
        endpoint: p.endpoint.clone(),
        state: p.state.as_str().to_string(),
        ..Default::default()
    }
}

#[async_trait]
impl pull_ttrpc::Pull for PullService {
    async fn pull(
        &self,
        ctx: &TtrpcContext,
        req: pb::PullRequest,
        sink: ServerStreamSender<pb::PullEvent>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let image_ref: ImageRef = req.reference.parse().map_err(|e| to_ttrpc(&e))?;
        let platform = crate::transfer::parse_platform(&req.platform)
            .map_err(|m| status(ttrpc::Code::INVALID_ARGUMENT, m))?;
        let cfg = self.registry.current();
        let failed = |e: &dyn std::error::Error| {
            status(ttrpc::Code::FAILED_PRECONDITION, crate::metadata::chain(e))
        };
        let mut configured: HashMap<String, Credential> = HashMap::new();
        for host in cfg.auths.keys() {
            match cfg.credentials_for(host).map_err(|e| failed(&e))? {
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
            Credentials::load(Some(&docker_config), &configured).map_err(|e| failed(&e))?;
        let hosts: Vec<RegistryHost> = cfg
            .endpoints_for(&image_ref.registry)
            .map_err(|e| failed(&e))?;
        let opts = PullOptions {
            platform,
            snapshotter: (!req.no_unpack).then(|| req.snapshotter.clone()),
            max_concurrent_downloads: match req.max_concurrent_downloads {
                0 => pull::DEFAULT_CONCURRENT_DOWNLOADS,
                n => n as usize,
            },
            client: self.client.clone(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let storage = self.storage.clone();
        let snapshotters = self.snapshotters.clone();
        let reference = req.reference.clone();
        let task = tokio::spawn(async move {
            pull::pull(
                storage,
                snapshotters,
                &ns,
                &reference,
                &hosts,
                Arc::new(credentials),
                opts,
                Some(tx),
            )
            .await
        });
        let mut client_gone = false;
        while let Some(p) = rx.recv().await {
            if client_gone {
                continue;
            }
            let event = pb::PullEvent {
                progress: Some(progress_pb(&p)).into(),
                ..Default::default()
            };
            if sink.send(&event).await.is_err() {
                // berthctl went away: the pull goes on (its content is useful and a retry
                // resumes from it), nobody watches.
                client_gone = true;
            }
        }
        let report = task
            .await
            .map_err(|e| status(ttrpc::Code::INTERNAL, format!("pull task: {e}")))?
            .map_err(|e| {
                tracing::warn!(reference = %req.reference, "pull failed: {}", crate::metadata::chain(&e));
                to_ttrpc(&e)
            })?;
        tracing::info!(
            reference = %report.name,
            downloaded = report.downloaded,
            millis = report.elapsed.as_millis() as u64,
            "pulled"
        );
        let target = report
            .target
            .clone()
            .unwrap_or_else(|| crate::metadata::Descriptor {
                media_type: String::new(),
                digest: crate::content::Digest::of(b""),
                size: 0,
                annotations: Default::default(),
            });
        let result = pb::PullResult {
            name: report.name.clone(),
            media_type: target.media_type.clone(),
            digest: target.digest.to_string(),
            size: target.size as i64,
            chain_id: report.chain_id.map(|c| c.to_string()).unwrap_or_default(),
            layers_fetched: report.layers_fetched as i64,
            layers_present: report.layers_present as i64,
            layers_applied: report.layers_applied as i64,
            layers_reused: report.layers_reused as i64,
            downloaded_bytes: report.downloaded as i64,
            millis: report.elapsed.as_millis() as i64,
            attempts: report.attempts.clone(),
            ..Default::default()
        };
        sink.send(&pb::PullEvent {
            done: true,
            result: Some(result).into(),
            ..Default::default()
        })
        .await?;
        Ok(())
    }
}
