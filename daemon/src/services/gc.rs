//! `berth.services.gc.v1.GC`: one collection on demand (`berthctl gc`).

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs;
use berth_api::proto::{gc as pb, gc_ttrpc};
use berth_engine::metadata::gc::GcReport;
use berth_engine::store::Store;
use ttrpc::r#async::TtrpcContext;

use super::blocking;

/// `berth.services.gc.v1.GC`.
pub struct GcService(pub Arc<Store>);

fn report_pb(r: GcReport) -> pb::CollectResponse {
    pb::CollectResponse {
        content_records: r
            .content_records
            .into_iter()
            .map(|(ns, d)| format!("{ns}/{d}"))
            .collect(),
        blobs: r.blobs,
        bytes_freed: i64::try_from(r.bytes_freed).unwrap_or(i64::MAX),
        snapshot_records: r
            .snapshot_records
            .into_iter()
            .map(|s| format!("{}/{}/{}", s.namespace, s.snapshotter, s.key))
            .collect(),
        backend_snapshots: r
            .backend_snapshots
            .into_iter()
            .map(|(s, k)| format!("{s}/{k}"))
            .collect(),
        expired_leases: r
            .expired_leases
            .into_iter()
            .map(|(ns, id)| format!("{ns}/{id}"))
            .collect(),
        errors: r.errors,
        duration_ns: i64::try_from(r.duration.as_nanos()).unwrap_or(i64::MAX),
        suspended: r.suspended.unwrap_or_default(),
        ..Default::default()
    }
}

#[async_trait]
impl gc_ttrpc::Gc for GcService {
    async fn collect(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::CollectRequest,
    ) -> ttrpc::Result<pb::CollectResponse> {
        let r = blocking(|| self.0.collect()).map_err(|e| errdefs::status(&e))?;
        Ok(report_pb(r))
    }
}
