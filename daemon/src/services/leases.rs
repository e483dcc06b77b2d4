//! `berth.services.leases.v1.Leases`: leases of the request's namespace and the resources
//! they hold against collection.

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs::{self, invalid};
use berth_api::proto::{leases as pb, leases_ttrpc};
use berth_api::time::{from_nanos, nanos};
use berth_engine::metadata::{Lease, LeaseResource};
use berth_engine::store::Store;
use ttrpc::r#async::TtrpcContext;

use super::{blocking, namespace};

/// `berth.services.leases.v1.Leases`.
pub struct LeasesService(pub Arc<Store>);

fn to_pb(l: Lease) -> pb::Lease {
    pb::Lease {
        id: l.id,
        created_at: nanos(l.created_at),
        labels: l.labels.into_iter().collect(),
        expires_at: l.expires_at.map_or(0, nanos),
        ..Default::default()
    }
}

fn resource(r: Option<pb::Resource>) -> ttrpc::Result<LeaseResource> {
    let r = r.ok_or_else(|| invalid("resource must be set"))?;
    LeaseResource::decode(&r.type_, &r.id).map_err(invalid)
}

#[async_trait]
impl leases_ttrpc::Leases for LeasesService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        req: pb::CreateRequest,
    ) -> ttrpc::Result<pb::CreateResponse> {
        let ns = namespace(ctx)?;
        let labels = req.labels.into_iter().collect();
        let l = blocking(|| {
            self.0
                .db
                .leases()
                .create(&ns, &req.id, labels, from_nanos(req.expires_at))
        })
        .map_err(|e| errdefs::status(&e))?;
        Ok(pb::CreateResponse {
            lease: Some(to_pb(l)).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: pb::DeleteRequest,
    ) -> ttrpc::Result<pb::DeleteResponse> {
        let ns = namespace(ctx)?;
        blocking(|| self.0.delete_lease(&ns, &req.id, req.sync))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::DeleteResponse::default())
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _req: pb::ListRequest,
    ) -> ttrpc::Result<pb::ListResponse> {
        let ns = namespace(ctx)?;
        let list = blocking(|| self.0.db.leases().list(&ns)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::ListResponse {
            leases: list.into_iter().map(to_pb).collect(),
            ..Default::default()
        })
    }

    async fn add_resource(
        &self,
        ctx: &TtrpcContext,
        req: pb::AddResourceRequest,
    ) -> ttrpc::Result<pb::AddResourceResponse> {
        let ns = namespace(ctx)?;
        let r = resource(req.resource.into_option())?;
        blocking(|| self.0.db.leases().add_resource(&ns, &req.id, &r))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::AddResourceResponse::default())
    }

    async fn delete_resource(
        &self,
        ctx: &TtrpcContext,
        req: pb::DeleteResourceRequest,
    ) -> ttrpc::Result<pb::DeleteResourceResponse> {
        let ns = namespace(ctx)?;
        let r = resource(req.resource.into_option())?;
        blocking(|| self.0.delete_lease_resource(&ns, &req.id, &r))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::DeleteResourceResponse::default())
    }

    async fn list_resources(
        &self,
        ctx: &TtrpcContext,
        req: pb::ListResourcesRequest,
    ) -> ttrpc::Result<pb::ListResourcesResponse> {
        let ns = namespace(ctx)?;
        let list = blocking(|| self.0.db.leases().resources(&ns, &req.id))
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::ListResourcesResponse {
            resources: list
                .iter()
                .map(|r| {
                    let (type_, id) = r.encode();
                    pb::Resource {
                        id,
                        type_,
                        ..Default::default()
                    }
                })
                .collect(),
            ..Default::default()
        })
    }
}
