//! `berth.services.registry.v1.Registry`: the endpoints a pull of a reference would use, as
//! berthd resolves them with its live settings ([`berth_engine::remotes::resolve`]). Not
//! namespaced: registry settings are the node's.

use async_trait::async_trait;
use berth_api::errdefs;
use berth_api::proto::{registry as pb, registry_ttrpc};
use berth_engine::remotes::config::LiveRegistry;
use berth_engine::remotes::resolve::resolve;
use berth_engine::remotes::RegistryHost;
use ttrpc::r#async::TtrpcContext;

/// `berth.services.registry.v1.Registry`, over the live registry settings.
pub struct RegistryService(pub LiveRegistry);

/// The wire form of one endpoint.
pub fn endpoint_pb(h: &RegistryHost, has_credentials: bool) -> pb::Endpoint {
    let c = h.capabilities;
    pb::Endpoint {
        url: h.base_url(),
        scheme: h.scheme.as_str().to_string(),
        host: h.host.clone(),
        path: h.path.clone(),
        capabilities: [(c.pull, "pull"), (c.resolve, "resolve"), (c.push, "push")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| n.to_string())
            .collect(),
        namespace: h.namespace.clone().unwrap_or_default(),
        ca_files: h
            .tls
            .ca_files
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        client_certs: h
            .tls
            .client_certs
            .iter()
            .map(|(c, k)| pb::ClientCert {
                cert: c.display().to_string(),
                key: k
                    .as_ref()
                    .map(|k| k.display().to_string())
                    .unwrap_or_default(),
                ..Default::default()
            })
            .collect(),
        skip_verify: h.tls.skip_verify,
        headers: h
            .headers
            .iter()
            .map(|(n, v)| pb::Header {
                name: n.clone(),
                values: v.clone(),
                ..Default::default()
            })
            .collect(),
        override_path: h.override_path,
        dial_timeout_ms: h.dial_timeout.map_or(0, |d| d.as_millis() as u64),
        source: h
            .source
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        has_credentials,
        ..Default::default()
    }
}

#[async_trait]
impl registry_ttrpc::Registry for RegistryService {
    async fn resolve_hosts(
        &self,
        _ctx: &TtrpcContext,
        req: pb::ResolveHostsRequest,
    ) -> ttrpc::Result<pb::ResolveHostsResponse> {
        let r = resolve(&self.0.current(), &req.reference).map_err(|e| errdefs::status(&e))?;
        Ok(pb::ResolveHostsResponse {
            object: r.name.object().to_string(),
            registry: r.name.registry,
            repository: r.name.repository,
            endpoints: r
                .endpoints
                .iter()
                .map(|(h, creds)| endpoint_pb(h, *creds))
                .collect(),
            config_path: r
                .config_path
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            warnings: r.warnings,
            ..Default::default()
        })
    }
}
