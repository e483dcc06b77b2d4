//! `berth.services.version.v1.Version`: which berthd is answering.

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use berth_api::proto::{version, version_ttrpc};

use berth_api::version::{REVISION, VERSION};

/// `berth.services.version.v1.Version`.
pub struct VersionService;

#[async_trait]
impl version_ttrpc::Version for VersionService {
    async fn version(
        &self,
        _ctx: &TtrpcContext,
        _req: version::VersionRequest,
    ) -> ttrpc::Result<version::VersionResponse> {
        Ok(version::VersionResponse {
            version: VERSION.to_string(),
            revision: REVISION.to_string(),
            ..Default::default()
        })
    }
}
