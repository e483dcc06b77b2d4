//! `berth.services.pull.v1.Pull`: runs a pull in berthd ([`Puller`]: endpoints and
//! credentials from the live registry settings at the start of every pull) and streams its
//! progress.

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs::{self, chain};
use berth_api::proto::{pull as pb, pull_ttrpc};
use berth_engine::remotes::pull::{self, PullRequest, Puller};
use ttrpc::r#async::{ServerStreamSender, TtrpcContext};

use super::namespace;

/// `berth.services.pull.v1.Pull`.
pub struct PullService(pub Arc<Puller>);

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
        let auth = match req.auth.as_ref() {
            Some(a) => berth_engine::remotes::auth::RequestAuth::from_fields(
                &a.username,
                &a.password,
                &a.auth,
                &a.identity_token,
                &a.registry_token,
                &a.server_address,
            )
            .map_err(|e| {
                errdefs::to_ttrpc(
                    errdefs::Kind::InvalidArgument,
                    format!("pull credentials: {e}"),
                )
            })?,
            None => None,
        };
        let planned = self
            .0
            .plan(&PullRequest {
                reference: req.reference.clone(),
                platform: req.platform.clone(),
                snapshotter: req.snapshotter.clone(),
                no_unpack: req.no_unpack,
                max_concurrent_downloads: req.max_concurrent_downloads as usize,
                auth,
            })
            .map_err(|e| errdefs::status(&e))?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move { planned.run(&ns, Some(tx)).await });
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
            .map_err(|e| errdefs::to_ttrpc(errdefs::Kind::Internal, format!("pull task: {e}")))?
            .map_err(|e| {
                tracing::warn!(reference = %req.reference, "pull failed: {}", chain(&e));
                errdefs::status(&e)
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
            .unwrap_or_else(|| berth_engine::metadata::Descriptor {
                media_type: String::new(),
                digest: berth_engine::content::Digest::of(b""),
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
