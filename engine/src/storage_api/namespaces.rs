//! `berth.services.namespaces.v1.Namespaces`.

use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use super::{blocking, nanos, status, Storage};
use berth_api::proto::{namespaces as pb, namespaces_ttrpc};
use crate::metadata::{Labels, Namespace};

pub(super) struct Service(pub Arc<Storage>);

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
impl namespaces_ttrpc::Namespaces for Service {
    async fn get(
        &self,
        _ctx: &TtrpcContext,
        req: pb::GetNamespaceRequest,
    ) -> ttrpc::Result<pb::GetNamespaceResponse> {
        let n = blocking(|| self.0.db.namespaces().get(&req.name)).map_err(status)?;
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
        let list = blocking(|| self.0.db.namespaces().list()).map_err(status)?;
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
        let n = blocking(|| self.0.db.namespaces().create(&n.name, labels)).map_err(status)?;
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
        .map_err(status)?;
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
        blocking(|| self.0.db.namespaces().delete(&req.name)).map_err(status)?;
        Ok(pb::DeleteNamespaceResponse::default())
    }
}
