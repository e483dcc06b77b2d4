//! `berth.services.introspection.v1.Introspection`: the engine's plugins and their status
//! (`ctr plugins ls`).

use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use berth_api::proto::{introspection, introspection_ttrpc};
use berth_engine::plugins::{Filter, Registry};

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
