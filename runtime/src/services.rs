//! ttrpc service implementations of berthd's API.

use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use crate::{
    api::{introspection, introspection_ttrpc, version, version_ttrpc},
    plugins::{Filter, Registry},
};

/// Engine version, from the crate.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Source revision, from `BERTH_REVISION` at build time.
pub const REVISION: &str = match option_env!("BERTH_REVISION") {
    Some(r) => r,
    None => "unknown",
};

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

/// `berth.services.introspection.v1.Introspection`.
pub struct IntrospectionService {
    pub registry: Arc<Registry>,
}

#[async_trait]
impl introspection_ttrpc::Introspection for IntrospectionService {
    async fn plugins(
        &self,
        _ctx: &TtrpcContext,
        req: introspection::PluginsRequest,
    ) -> ttrpc::Result<introspection::PluginsResponse> {
        let filters = req
            .filters
            .iter()
            .map(|f| f.parse::<Filter>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    e.to_string(),
                ))
            })?;
        Ok(introspection::PluginsResponse {
            plugins: self
                .registry
                .list(&filters)
                .into_iter()
                .map(Into::into)
                .collect(),
            ..Default::default()
        })
    }
}
