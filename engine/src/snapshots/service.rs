//! The Snapshots ttrpc service (`api/proto/berth/services/snapshots/v1`), modelled on
//! containerd's `plugins/services/snapshots/service.go`, and the loading of berthd's
//! snapshotter plugins.
//!
//! Namespaces: the backend snapshotters are not namespace-aware; the service maps the key `k`
//! of namespace `ns` onto the backend key `ns/k` (parents likewise) and shows only a
//! namespace's own snapshots, with the prefix removed. The namespace is the ttrpc metadata
//! value `berth-namespace` (`default` when absent) and must be a containerd namespace name
//! (letters and digits, `.`, `_`, `-` between them, at most 76 characters), so it never holds
//! a `/` and the mapping is unambiguous. When the metadata database (issue 4) takes over
//! namespaced snapshot records, it replaces this mapping, not the backends.
//!
//! The snapshotter calls are blocking (directory walks, copies), so each runs on tokio's
//! blocking pool. Errors keep their class as ttrpc codes ([`Error::ttrpc_code`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use super::filter::Filter;
use super::native::Native;
use super::overlay::{self, Overlay};
use super::{Error, Info, Kind, Labels, Mount, Snapshotter};
use berth_api::proto::{snapshots as pb, snapshots_ttrpc};
use crate::plugins::{Registry, Status};

/// The ttrpc metadata key carrying the namespace.
pub const NAMESPACE_KEY: &str = "berth-namespace";
/// The namespace of requests that name none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The plugin type of snapshotters, containerd's.
pub const PLUGIN_TYPE: &str = "io.containerd.snapshotter.v1";

/// The loaded snapshotters by id, and which one requests without a `snapshotter` use.
#[derive(Default, Clone)]
pub struct Snapshotters {
    map: BTreeMap<String, Arc<dyn Snapshotter>>,
    default: Option<String>,
}

impl Snapshotters {
    /// Adds a snapshotter; the first added becomes the default.
    pub fn insert(&mut self, id: &str, sn: Arc<dyn Snapshotter>) {
        if self.default.is_none() {
            self.default = Some(id.to_string());
        }
        self.map.insert(id.to_string(), sn);
    }

    /// The snapshotter `id` (`""`: the default), or INVALID_ARGUMENT naming the loaded ones
    /// (containerd's code for "snapshotter not loaded").
    /// Names of the loaded snapshotters.
    pub fn ids(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    /// The snapshotter `id` when it is loaded.
    pub fn lookup(&self, id: &str) -> Option<Arc<dyn Snapshotter>> {
        self.map.get(id).cloned()
    }

    pub fn get(&self, id: &str) -> ttrpc::Result<Arc<dyn Snapshotter>> {
        let id = if id.is_empty() {
            self.default.as_deref().unwrap_or("")
        } else {
            id
        };
        self.map.get(id).cloned().ok_or_else(|| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "snapshotter {id:?} is not loaded (loaded: {})",
                    self.map.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })
    }

    /// Makes the loaded snapshotter `id` the default (e.g. `default = true` in the zfs
    /// plugin's section); false when it is not loaded.
    pub fn set_default(&mut self, id: &str) -> bool {
        let loaded = self.map.contains_key(id);
        if loaded {
            self.default = Some(id.to_string());
        }
        loaded
    }

    /// The default snapshotter's id.
    pub fn default_id(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// Closes every snapshotter (at shutdown).
    pub fn close_all(&self) {
        for (id, sn) in &self.map {
            if let Err(e) = sn.close() {
                tracing::warn!(snapshotter = %id, error = %e, "closing snapshotter failed");
            }
        }
    }
}

/// Opens berthd's snapshotters under `<root>/io.containerd.snapshotter.v1.<id>` and records
/// each as a plugin: overlayfs (default) unless the kernel lacks overlayfs or the root's
/// filesystem refuses it (Skipped, with the reason), then native (always possible). A failure
/// to open is recorded as the plugin's Error, never fatal to berthd.
pub fn load(root: &Path, registry: &mut Registry) -> Snapshotters {
    let mut out = Snapshotters::default();
    let dir = |id: &str| root.join(format!("{PLUGIN_TYPE}.{id}"));
    let overlay_root = dir("overlayfs");
    let overlay_status = match overlay::unsupported_reason() {
        Some(why) => Status::Skipped(why),
        None => match overlay::probe(&overlay_root).and_then(|()| Overlay::open(&overlay_root)) {
            Ok(o) => {
                out.insert("overlayfs", Arc::new(o));
                Status::Ok
            }
            Err(e) => Status::Skipped(format!(
                "overlayfs unusable on {}: {e}",
                overlay_root.display()
            )),
        },
    };
    let p = registry.register(PLUGIN_TYPE, "overlayfs", overlay_status);
    p.exports
        .insert("root".into(), overlay_root.display().to_string());
    let native_root = dir("native");
    let native_status = match Native::open(&native_root) {
        Ok(n) => {
            out.insert("native", Arc::new(n));
            Status::Ok
        }
        Err(e) => Status::Error(e.to_string()),
    };
    let p = registry.register(PLUGIN_TYPE, "native", native_status);
    p.exports
        .insert("root".into(), native_root.display().to_string());
    let svc = registry.register(
        "berth.service.v1",
        "snapshots",
        if out.default.is_some() {
            Status::Ok
        } else {
            Status::Error("no snapshotter could be loaded".into())
        },
    );
    svc.requires.push(PLUGIN_TYPE.into());
    if let Some(d) = &out.default {
        svc.exports.insert("default".into(), d.clone());
    }
    out
}

fn status(code: ttrpc::Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

/// Checks a namespace name the way containerd does.
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 76
        && ns
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "namespace {ns:?} is invalid: use letters and digits, with '.', '_' or '-' between \
             them, at most 76 characters"
        ))
    }
}

fn namespace(ctx: &TtrpcContext) -> ttrpc::Result<String> {
    let ns = ctx
        .metadata
        .get(NAMESPACE_KEY)
        .and_then(|v| v.first())
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    validate_namespace(&ns).map_err(|m| status(ttrpc::Code::INVALID_ARGUMENT, m))?;
    Ok(ns)
}

/// Maps a namespace-relative key onto the backend (`""` stays `""`: no parent).
fn backend(ns: &str, key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{ns}/{key}")
    }
}

fn strip<'a>(ns: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(ns)?.strip_prefix('/')
}

/// An error as a ttrpc status, with the namespace prefix removed from the keys it quotes.
fn to_status(ns: &str, e: Error) -> ttrpc::Error {
    let msg = e.to_string().replace(&format!("\"{ns}/"), "\"");
    status(e.ttrpc_code(), msg)
}

fn ns_info(ns: &str, mut i: Info) -> Info {
    if let Some(n) = strip(ns, &i.name) {
        i.name = n.to_string();
    }
    if let Some(p) = strip(ns, &i.parent) {
        i.parent = p.to_string();
    }
    i
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

/// Converts a mount message back (clients that mount what berthd returns).
pub fn mount_from_pb(m: &pb::Mount) -> Mount {
    Mount {
        fs_type: m.type_.clone(),
        source: m.source.clone(),
        target: (!m.target.is_empty()).then(|| m.target.clone()),
        options: m.options.clone(),
    }
}

fn labels(l: &std::collections::HashMap<String, String>) -> Labels {
    l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The service over the loaded snapshotters.
pub struct SnapshotsService {
    /// The snapshotters requests are routed to.
    pub snapshotters: Arc<Snapshotters>,
}

impl SnapshotsService {
    /// Runs `f` on the blocking pool against snapshotter `id` in the request's namespace.
    async fn call<T: Send + 'static>(
        &self,
        ctx: &TtrpcContext,
        id: &str,
        f: impl FnOnce(&dyn Snapshotter, &str) -> super::Result<T> + Send + 'static,
    ) -> ttrpc::Result<T> {
        let ns = namespace(ctx)?;
        let sn = self.snapshotters.get(id)?;
        let ns2 = ns.clone();
        tokio::task::spawn_blocking(move || f(sn.as_ref(), &ns2))
            .await
            .map_err(|e| {
                status(
                    ttrpc::Code::INTERNAL,
                    format!("snapshotter task failed: {e}"),
                )
            })?
            .map_err(|e| to_status(&ns, e))
    }
}

fn mounts_pb(m: Vec<Mount>) -> Vec<pb::Mount> {
    m.iter().map(mount_to_pb).collect()
}

#[async_trait]
impl snapshots_ttrpc::Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        ctx: &TtrpcContext,
        req: pb::PrepareSnapshotRequest,
    ) -> ttrpc::Result<pb::PrepareSnapshotResponse> {
        let m = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                sn.prepare(
                    &backend(ns, &req.key),
                    &backend(ns, &req.parent),
                    labels(&req.labels),
                )
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
        let m = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                sn.view(
                    &backend(ns, &req.key),
                    &backend(ns, &req.parent),
                    labels(&req.labels),
                )
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
        let m = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                sn.mounts(&backend(ns, &req.key))
            })
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
        self.call(ctx, &req.snapshotter, move |sn, ns| {
            sn.commit(
                &backend(ns, &req.name),
                &backend(ns, &req.key),
                labels(&req.labels),
            )
        })
        .await?;
        Ok(pb::CommitSnapshotResponse::default())
    }

    async fn remove(
        &self,
        ctx: &TtrpcContext,
        req: pb::RemoveSnapshotRequest,
    ) -> ttrpc::Result<pb::RemoveSnapshotResponse> {
        self.call(ctx, &req.snapshotter, move |sn, ns| {
            sn.remove(&backend(ns, &req.key))
        })
        .await?;
        Ok(pb::RemoveSnapshotResponse::default())
    }

    async fn stat(
        &self,
        ctx: &TtrpcContext,
        req: pb::StatSnapshotRequest,
    ) -> ttrpc::Result<pb::StatSnapshotResponse> {
        let i = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                sn.stat(&backend(ns, &req.key)).map(|i| ns_info(ns, i))
            })
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
        let Some(info) = req.info.as_ref() else {
            return Err(status(ttrpc::Code::INVALID_ARGUMENT, "update without info"));
        };
        let mut info = info_from_pb(info);
        let mask = req.update_mask.clone();
        let i = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                info.name = backend(ns, &info.name);
                let paths: Vec<&str> = mask.iter().map(String::as_str).collect();
                sn.update(&info, &paths).map(|i| ns_info(ns, i))
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
        let filter =
            Filter::parse(&req.filters).map_err(|e| status(e.ttrpc_code(), e.to_string()))?;
        let infos = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                let mut out = Vec::new();
                sn.walk(&[], &mut |i| {
                    if strip(ns, &i.name).is_some() {
                        let i = ns_info(ns, i.clone());
                        if filter.matches(&i) {
                            out.push(i);
                        }
                    }
                    Ok(())
                })?;
                Ok(out)
            })
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
        let u = self
            .call(ctx, &req.snapshotter, move |sn, ns| {
                sn.usage(&backend(ns, &req.key))
            })
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
        self.call(ctx, &req.snapshotter, |sn, _| sn.cleanup())
            .await?;
        Ok(pb::CleanupResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_containerd_rules() {
        for ok in ["default", "k8s.io", "a-b_c.d", "x1"] {
            assert!(validate_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "-a", "a..b", "a b", &"x".repeat(77)] {
            assert!(validate_namespace(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_map_onto_the_backend_and_back() {
        assert_eq!(backend("ns", "k/with/slash"), "ns/k/with/slash");
        assert_eq!(backend("ns", ""), "");
        assert_eq!(strip("ns", "ns/k"), Some("k"));
        assert_eq!(strip("ns", "nsx/k"), None);
        let e = Error::NotFound { key: "ns/k".into() };
        let ttrpc::Error::RpcStatus(s) = to_status("ns", e) else {
            panic!()
        };
        assert_eq!(s.message(), "snapshot \"k\" not found");
        assert_eq!(s.code(), ttrpc::Code::NOT_FOUND);
    }
}
