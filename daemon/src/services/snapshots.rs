//! `berth.services.snapshots.v1.Snapshots` (containerd's `plugins/services/snapshots`): the
//! loaded snapshotters as the request's namespace sees them, over
//! [`berth_engine::snapshots::namespaced`] (keys mapped onto the backend as `<ns>/<key>`,
//! only the namespace's own snapshots listed, keys in errors without the prefix). The
//! snapshotter calls are blocking, so each runs on tokio's blocking pool.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use berth_api::errdefs::{self, invalid};
use berth_api::proto::{snapshots as pb, snapshots_ttrpc};
use berth_engine::snapshots::filter::Filter;
use berth_engine::snapshots::namespaced::{self, Namespaced};
use berth_engine::snapshots::{Info, Kind, Labels, Mount, Snapshotters};
use ttrpc::r#async::TtrpcContext;

use super::namespace;

/// `berth.services.snapshots.v1.Snapshots`.
pub struct SnapshotsService {
    /// The snapshotters requests are routed to.
    pub snapshotters: Arc<Snapshotters>,
}

fn nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// Converts a snapshot record to its message.
pub fn info_to_pb(i: &Info) -> pb::Info {
    pb::Info {
        name: i.name.clone(),
        parent: i.parent.clone(),
        kind: match i.kind {
            Kind::View => pb::Kind::VIEW,
            Kind::Active => pb::Kind::ACTIVE,
            Kind::Committed => pb::Kind::COMMITTED,
        }
        .into(),
        created_at_ns: nanos(i.created),
        updated_at_ns: nanos(i.updated),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    }
}

/// Converts a message back to a record (for Update: name and labels are what count).
pub fn info_from_pb(i: &pb::Info) -> Info {
    let t = |ns: i64| UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    Info {
        kind: match i.kind.enum_value() {
            Ok(pb::Kind::VIEW) => Kind::View,
            Ok(pb::Kind::COMMITTED) => Kind::Committed,
            _ => Kind::Active,
        },
        name: i.name.clone(),
        parent: i.parent.clone(),
        labels: i
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        created: t(i.created_at_ns),
        updated: t(i.updated_at_ns),
    }
}

/// Converts a mount to its message.
pub fn mount_to_pb(m: &Mount) -> pb::Mount {
    pb::Mount {
        type_: m.fs_type.clone(),
        source: m.source.clone(),
        target: m.target.clone().unwrap_or_default(),
        options: m.options.clone(),
        ..Default::default()
    }
}

fn mounts_pb(m: Vec<Mount>) -> Vec<pb::Mount> {
    m.iter().map(mount_to_pb).collect()
}

fn labels(l: &std::collections::HashMap<String, String>) -> Labels {
    l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl SnapshotsService {
    /// Runs `f` on the blocking pool against snapshotter `id` (`""`: the default) as
    /// namespace `ns` sees it.
    async fn call<T: Send + 'static>(
        &self,
        ns: String,
        id: &str,
        f: impl FnOnce(&Namespaced) -> namespaced::Result<T> + Send + 'static,
    ) -> ttrpc::Result<T> {
        let sn = self.snapshotters.get(id).map_err(|e| errdefs::status(&e))?;
        super::spawn_blocking("snapshotter task failed", move || {
            f(&Namespaced::new(sn, &ns))
        })
        .await?
        .map_err(|e| errdefs::status(&e))
    }
}

#[async_trait]
impl snapshots_ttrpc::Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        ctx: &TtrpcContext,
        req: pb::PrepareSnapshotRequest,
    ) -> ttrpc::Result<pb::PrepareSnapshotResponse> {
        let ns = namespace(ctx)?;
        let m = self
            .call(ns, &req.snapshotter, move |sn| {
                sn.prepare(&req.key, &req.parent, labels(&req.labels))
            })
            .await?;
        Ok(pb::PrepareSnapshotResponse {
            mounts: mounts_pb(m),
            ..Default::default()
        })
    }

    async fn view(
        &self,
        ctx: &TtrpcContext,
        req: pb::ViewSnapshotRequest,
    ) -> ttrpc::Result<pb::ViewSnapshotResponse> {
        let ns = namespace(ctx)?;
        let m = self
            .call(ns, &req.snapshotter, move |sn| {
                sn.view(&req.key, &req.parent, labels(&req.labels))
            })
            .await?;
        Ok(pb::ViewSnapshotResponse {
            mounts: mounts_pb(m),
            ..Default::default()
        })
    }

    async fn mounts(
        &self,
        ctx: &TtrpcContext,
        req: pb::MountsRequest,
    ) -> ttrpc::Result<pb::MountsResponse> {
        let ns = namespace(ctx)?;
        let m = self
            .call(ns, &req.snapshotter, move |sn| sn.mounts(&req.key))
            .await?;
        Ok(pb::MountsResponse {
            mounts: mounts_pb(m),
            ..Default::default()
        })
    }

    async fn commit(
        &self,
        ctx: &TtrpcContext,
        req: pb::CommitSnapshotRequest,
    ) -> ttrpc::Result<pb::CommitSnapshotResponse> {
        let ns = namespace(ctx)?;
        self.call(ns, &req.snapshotter, move |sn| {
            sn.commit(&req.name, &req.key, labels(&req.labels))
        })
        .await?;
        Ok(pb::CommitSnapshotResponse::default())
    }

    async fn remove(
        &self,
        ctx: &TtrpcContext,
        req: pb::RemoveSnapshotRequest,
    ) -> ttrpc::Result<pb::RemoveSnapshotResponse> {
        let ns = namespace(ctx)?;
        self.call(ns, &req.snapshotter, move |sn| sn.remove(&req.key))
            .await?;
        Ok(pb::RemoveSnapshotResponse::default())
    }

    async fn stat(
        &self,
        ctx: &TtrpcContext,
        req: pb::StatSnapshotRequest,
    ) -> ttrpc::Result<pb::StatSnapshotResponse> {
        let ns = namespace(ctx)?;
        let i = self
            .call(ns, &req.snapshotter, move |sn| sn.stat(&req.key))
            .await?;
        Ok(pb::StatSnapshotResponse {
            info: Some(info_to_pb(&i)).into(),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        ctx: &TtrpcContext,
        req: pb::UpdateSnapshotRequest,
    ) -> ttrpc::Result<pb::UpdateSnapshotResponse> {
        let ns = namespace(ctx)?;
        let Some(info) = req.info.as_ref() else {
            return Err(invalid("update without info"));
        };
        let info = info_from_pb(info);
        let mask = req.update_mask.clone();
        let i = self
            .call(ns, &req.snapshotter, move |sn| {
                let paths: Vec<&str> = mask.iter().map(String::as_str).collect();
                sn.update(info, &paths)
            })
            .await?;
        Ok(pb::UpdateSnapshotResponse {
            info: Some(info_to_pb(&i)).into(),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        req: pb::ListSnapshotsRequest,
    ) -> ttrpc::Result<pb::ListSnapshotsResponse> {
        let ns = namespace(ctx)?;
        let filter = Filter::parse(&req.filters).map_err(|e| errdefs::status(&e))?;
        let infos = self
            .call(ns, &req.snapshotter, move |sn| sn.list(&filter))
            .await?;
        Ok(pb::ListSnapshotsResponse {
            info: infos.iter().map(info_to_pb).collect(),
            ..Default::default()
        })
    }

    async fn usage(
        &self,
        ctx: &TtrpcContext,
        req: pb::UsageRequest,
    ) -> ttrpc::Result<pb::UsageResponse> {
        let ns = namespace(ctx)?;
        let u = self
            .call(ns, &req.snapshotter, move |sn| sn.usage(&req.key))
            .await?;
        Ok(pb::UsageResponse {
            size: u.size,
            inodes: u.inodes,
            ..Default::default()
        })
    }

    async fn cleanup(
        &self,
        ctx: &TtrpcContext,
        req: pb::CleanupRequest,
    ) -> ttrpc::Result<pb::CleanupResponse> {
        let ns = namespace(ctx)?;
        self.call(ns, &req.snapshotter, |sn| sn.cleanup()).await?;
        Ok(pb::CleanupResponse::default())
    }
}
