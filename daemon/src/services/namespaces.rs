//! `berth.services.namespaces.v1.Namespaces`. Not namespaced itself: the namespace is the
//! request's subject, named in the message.

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs;
use berth_api::proto::{namespaces as pb, namespaces_ttrpc};
use berth_api::time::nanos;
use berth_engine::metadata::{Labels, Namespace};
use berth_engine::store::Store;
use ttrpc::r#async::TtrpcContext;

use super::blocking;

/// `berth.services.namespaces.v1.Namespaces`.
pub struct NamespacesService(pub Arc<Store>);

fn to_pb(n: Namespace) -> pb::Namespace {
    pb::Namespace {
        name: n.name,
        labels: n.labels.into_iter().collect(),
        created_at: nanos(n.created_at),
        updated_at: nanos(n.updated_at),
        ..Default::default()
    }
}

#[async_trait]
impl namespaces_ttrpc::Namespaces for NamespacesService {
    async fn get(
        &self,
        _ctx: &TtrpcContext,
        req: pb::GetNamespaceRequest,
    ) -> ttrpc::Result<pb::GetNamespaceResponse> {
        let n =
            blocking(|| self.0.db.namespaces().get(&req.name)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::GetNamespaceResponse {
            namespace: Some(to_pb(n)).into(),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::ListNamespacesRequest,
    ) -> ttrpc::Result<pb::ListNamespacesResponse> {
        let list = blocking(|| self.0.db.namespaces().list()).map_err(|e| errdefs::status(&e))?;
        Ok(pb::ListNamespacesResponse {
            namespaces: list.into_iter().map(to_pb).collect(),
            ..Default::default()
        })
    }

    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: pb::CreateNamespaceRequest,
    ) -> ttrpc::Result<pb::CreateNamespaceResponse> {
        let n = req.namespace.into_option().unwrap_or_default();
        let labels: Labels = n.labels.into_iter().collect();
        let n = blocking(|| self.0.db.namespaces().create(&n.name, labels))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::CreateNamespaceResponse {
            namespace: Some(to_pb(n)).into(),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: pb::UpdateNamespaceRequest,
    ) -> ttrpc::Result<pb::UpdateNamespaceResponse> {
        let n = req.namespace.into_option().unwrap_or_default();
        let labels: Labels = n.labels.into_iter().collect();
        let n = blocking(|| {
            self.0
                .db
                .namespaces()
                .update(&n.name, labels, &req.update_mask)
        })
        .map_err(|e| errdefs::status(&e))?;
        Ok(pb::UpdateNamespaceResponse {
            namespace: Some(to_pb(n)).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: pb::DeleteNamespaceRequest,
    ) -> ttrpc::Result<pb::DeleteNamespaceResponse> {
        blocking(|| self.0.db.namespaces().delete(&req.name)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::DeleteNamespaceResponse::default())
    }
}
