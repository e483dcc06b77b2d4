//! `berth.services.registry.v1.Registry`: the endpoints a pull of a reference would use,
//! resolved by berthd with its live settings, so `berthctl hosts resolve` shows exactly what
//! the daemon does (its config_path, its mirrors, its credentials), not what a client-side
//! reading of the files would guess.

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use super::config::{LiveRegistry, RegistryConfigError};
use super::hosts::{parse_reference, HostsError};
use super::RegistryHost;
use berth_api::proto::{registry as pb, registry_ttrpc};

/// The service over the live registry settings.
pub struct RegistryService(pub LiveRegistry);

fn status(code: ttrpc::Code, e: impl std::fmt::Display) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

/// A bad reference is the caller's fault; a bad hosts.toml or credentials file is the
/// node's configuration, a precondition the caller cannot fix by asking differently.
fn code_of(e: &RegistryConfigError) -> ttrpc::Code {
    match e {
        RegistryConfigError::Hosts(
            HostsError::BadReference { .. } | HostsError::BadRegistry(_),
        ) => ttrpc::Code::INVALID_ARGUMENT,
        _ => ttrpc::Code::FAILED_PRECONDITION,
    }
}

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
        let name = parse_reference(&req.reference)
            .map_err(|e| status(ttrpc::Code::INVALID_ARGUMENT, e))?;
        let cfg = self.0.current();
        let hosts = cfg
            .endpoints_for(&name.registry)
            .map_err(|e| status(code_of(&e), e))?;
        let mut endpoints = Vec::with_capacity(hosts.len());
        for h in &hosts {
            let creds = cfg
                .credentials_for(&h.host)
                .map_err(|e| status(code_of(&e), e))?;
            endpoints.push(endpoint_pb(h, creds.is_some()));
        }
        Ok(pb::ResolveHostsResponse {
            object: name.object().to_string(),
            registry: name.registry,
            repository: name.repository,
            endpoints,
            config_path: cfg
                .config_path
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
            warnings: cfg.warnings(),
            ..Default::default()
        })
    }
}
