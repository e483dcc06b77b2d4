//! `berth.services.introspection.v1.Introspection`: the engine's plugins and their status
//! (`ctr plugins ls`).

use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use berth_api::proto::{introspection, introspection_ttrpc};
use berth_engine::plugins::{Filter, Plugin, Registry, Status};

/// The wire form of a plugin.
fn plugin_pb(p: &Plugin) -> introspection::Plugin {
    use introspection::PluginStatus;
    let (status, reason) = match &p.status {
        Status::Ok => (PluginStatus::OK, String::new()),
        Status::Skipped(r) => (PluginStatus::SKIPPED, r.clone()),
        Status::Error(r) => (PluginStatus::ERROR, r.clone()),
    };
    introspection::Plugin {
        type_: p.kind.clone(),
        id: p.id.clone(),
        requires: p.requires.clone(),
        status: status.into(),
        reason,
        exports: p.exports.clone().into_iter().collect(),
        ..Default::default()
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
            .map_err(|e| berth_api::errdefs::invalid(e.to_string()))?;
        Ok(introspection::PluginsResponse {
            plugins: self
                .registry
                .list(&filters)
                .into_iter()
                .map(plugin_pb)
                .collect(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_status_and_reason() {
        let mut r = Registry::default();
        r.register("t", "i", Status::Error("boom".into()));
        let p = plugin_pb(r.list(&[])[0]);
        assert_eq!(
            p.status.enum_value(),
            Ok(introspection::PluginStatus::ERROR)
        );
        assert_eq!(p.reason, "boom");
    }
}
