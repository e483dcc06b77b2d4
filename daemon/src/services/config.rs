//! `berth.services.config.v1.Config`: reloading berthd's configuration on request.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::error;
use ttrpc::r#async::TtrpcContext;

use berth_api::proto::{config as pb, config_ttrpc};

use crate::reload::Reloader;

/// `berth.services.config.v1.Config`.
pub struct ConfigService(pub Arc<Reloader>);

#[async_trait]
impl config_ttrpc::Config for ConfigService {
    async fn reload(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::ReloadRequest,
    ) -> ttrpc::Result<pb::ReloadResponse> {
        match self.0.reload().await {
            Ok(r) => Ok(pb::ReloadResponse {
                applied: r.applied,
                needs_restart: r.needs_restart,
                warnings: r.warnings,
                sources: r.sources.iter().map(|p| p.display().to_string()).collect(),
                ..Default::default()
            }),
            Err(e) => {
                error!("reload rejected, keeping the running configuration: {e}");
                Err(berth_api::errdefs::to_ttrpc(
                    berth_api::errdefs::Kind::FailedPrecondition,
                    format!("reload rejected, keeping the running configuration: {e}"),
                ))
            }
        }
    }
}
