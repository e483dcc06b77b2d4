//! Garbage collection of content and snapshots, with containerd's model
//! (`core/metadata/gc.go`, `pkg/gc`): mark from roots, sweep the rest.
//!
//! **Roots**: every image (its target), every container (its snapshot and its image), every
//! lease that has not expired (the resources attached to it), and content records or snapshot
//! records carrying the label [`LABEL_ROOT`].
//! **References** followed from a marked object: an image's target; labels on images,
//! content and snapshots — `containerd.io/gc.ref.content[.<any>|/<any>]` = digest,
//! `containerd.io/gc.ref.snapshot.<snapshotter>[/<any>]` = key,
//! `containerd.io/gc.ref.image[.<any>|/<any>]` = image name — all within the same namespace;
//! and a snapshot's parent.
//!
//! **Sweep**, in this order (records first, then disk; see [`super`] for why): one write
//! transaction removes unmarked content and snapshot records and expired leases; then, under
//! the database's exclusive resource guard, blobs recorded by no namespace are deleted from
//! the content store and backend snapshots recorded by no namespace are removed through a
//! [`SnapshotSweeper`], children before parents. Individual failures do not stop the sweep;
//! they are collected in [`GcReport::errors`].
//!
//! Ingests are not collected: they are resumable by design and removed by `Abort`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use redb::ReadableTable;
use serde::Serialize;

use super::leases::{delete_resources, resources_of};
use super::schema;
use super::{
    decode, Container, ContentRecord, Db, Image, Labels, Lease, LeaseResource, Result,
    SnapshotRecord,
};
use crate::content::{Digest, Manager};
use berth_api::errdefs::chain;

/// Label making a content or snapshot record a root.
pub const LABEL_ROOT: &str = "containerd.io/gc.root";
/// Label prefix of a reference to content (value: digest).
pub const LABEL_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Label prefix of a reference to a snapshot (`….<snapshotter>`, value: key).
pub const LABEL_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";
/// Label prefix of a reference to an image (value: image name).
pub const LABEL_REF_IMAGE: &str = "containerd.io/gc.ref.image";

/// An error from a snapshotter backend.
pub type SweepError = Box<dyn std::error::Error + Send + Sync>;

/// What the collector needs from the snapshotters: the backend snapshots that exist and a way
/// to remove one. The snapshotter plugins implement it; the collector never touches their
/// directories itself.
pub trait SnapshotSweeper: Send + Sync {
    /// Names of the snapshotters this sweeper manages.
    fn snapshotters(&self) -> Vec<String>;
    /// Backend keys that exist in `snapshotter`, parents before children (creation order),
    /// so removing them in reverse never removes a parent first. Snapshots being created
    /// must be protected with [`Db::resource_guard`] until their record is committed.
    fn backend_keys(&self, snapshotter: &str) -> Result<Vec<String>, SweepError>;
    /// Removes one backend snapshot (its children are already gone).
    fn remove(&self, snapshotter: &str, backend_key: &str) -> Result<(), SweepError>;
}

/// The sweeper of an engine with no snapshotter loaded: nothing exists to sweep, and a
/// snapshot record whose backend cannot be reached is reported in [`GcReport::errors`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSnapshotters;

impl SnapshotSweeper for NoSnapshotters {
    fn snapshotters(&self) -> Vec<String> {
        Vec::new()
    }

    fn backend_keys(&self, _: &str) -> Result<Vec<String>, SweepError> {
        Ok(Vec::new())
    }

    fn remove(&self, snapshotter: &str, backend_key: &str) -> Result<(), SweepError> {
        Err(format!(
            "snapshotter {snapshotter:?} is not loaded: backend snapshot {backend_key:?} kept"
        )
        .into())
    }
}

/// A snapshot record the collector removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedSnapshot {
    pub namespace: String,
    pub snapshotter: String,
    pub key: String,
    pub backend_key: String,
}

/// What one collection removed, and what it could not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Content records removed: (namespace, digest).
    pub content_records: Vec<(String, String)>,
    /// Blobs deleted from the content store.
    pub blobs: Vec<String>,
    /// Bytes of the deleted blobs.
    pub bytes_freed: u64,
    pub snapshot_records: Vec<RemovedSnapshot>,
    /// Backend snapshots removed: (snapshotter, backend key).
    pub backend_snapshots: Vec<(String, String)>,
    /// Expired leases deleted: (namespace, id).
    pub expired_leases: Vec<(String, String)>,
    /// Failures that did not stop the sweep, one line each.
    pub errors: Vec<String>,
    /// Why blobs and backend snapshots were not swept, if they were not
    /// ([`Db::sweep_suspended`]): records were still collected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
    /// Wall time of the collection.
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Node {
    Image(String, String),
    Content(String, String),
    Snapshot(String, String, String),
}

/// References expressed by labels, in namespace `ns`.
fn label_refs(ns: &str, labels: &Labels, out: &mut Vec<Node>) {
    // `prefix` alone, or followed by `.` or `/` and a free name (containerd's rule).
    let named = |k: &str, prefix: &str| {
        k.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('/'))
    };
    for (k, v) in labels {
        if named(k, LABEL_REF_CONTENT) {
            // A malformed digest names no blob; the label is ignored like containerd does.
            if let Ok(d) = v.parse::<Digest>() {
                out.push(Node::Content(ns.to_owned(), d.to_string()));
            }
        } else if let Some(rest) = k.strip_prefix(LABEL_REF_SNAPSHOT) {
            let sn = rest.split('/').next().unwrap_or_default();
            if !sn.is_empty() {
                out.push(Node::Snapshot(ns.to_owned(), sn.to_owned(), v.clone()));
            }
        } else if named(k, LABEL_REF_IMAGE) {
            out.push(Node::Image(ns.to_owned(), v.clone()));
        }
    }
}

type Key3 = (String, String, String);

/// Runs one collection (see the module docs). Fails only when the database transaction
/// fails; everything after it keeps going and reports errors in the [`GcReport`].
pub fn collect(
    db: &Db,
    store: &(impl Manager + ?Sized),
    sweeper: &dyn SnapshotSweeper,
) -> Result<GcReport> {
    let started = Instant::now();
    let _exclusive = db.exclusive_guard();
    let mut report = GcReport::default();
    let now = SystemTime::now();

    let (removed_snaps, live_digests, live_backend) = db.write("garbage collection", |txn| {
        // Load everything: the mark phase needs the whole graph.
        let mut images: BTreeMap<(String, String), Image> = BTreeMap::new();
        for item in txn.open_table(schema::IMAGES)?.iter()? {
            let (k, v) = item?;
            let (ns, name) = k.value();
            let img: Image = decode("images", || format!("{ns}/{name}"), v.value())?;
            images.insert((ns.to_owned(), name.to_owned()), img);
        }
        let mut content: BTreeMap<(String, String), ContentRecord> = BTreeMap::new();
        for item in txn.open_table(schema::CONTENT)?.iter()? {
            let (k, v) = item?;
            let (ns, d) = k.value();
            let rec: ContentRecord = decode("content", || format!("{ns}/{d}"), v.value())?;
            content.insert((ns.to_owned(), d.to_owned()), rec);
        }
        let mut snaps: BTreeMap<Key3, SnapshotRecord> = BTreeMap::new();
        for item in txn.open_table(schema::SNAPSHOTS)?.iter()? {
            let (k, v) = item?;
            let (ns, sn, key) = k.value();
            let rec: SnapshotRecord =
                decode("snapshots", || format!("{ns}/{sn}/{key}"), v.value())?;
            snaps.insert((ns.to_owned(), sn.to_owned(), key.to_owned()), rec);
        }
        let mut containers: Vec<(String, Container)> = Vec::new();
        for item in txn.open_table(schema::CONTAINERS)?.iter()? {
            let (k, v) = item?;
            let (ns, id) = k.value();
            containers.push((
                ns.to_owned(),
                decode("containers", || format!("{ns}/{id}"), v.value())?,
            ));
        }
        let mut leases: Vec<(String, Lease)> = Vec::new();
        for item in txn.open_table(schema::LEASES)?.iter()? {
            let (k, v) = item?;
            let (ns, id) = k.value();
            leases.push((
                ns.to_owned(),
                decode("leases", || format!("{ns}/{id}"), v.value())?,
            ));
        }

        // Roots.
        let mut work: Vec<Node> = Vec::new();
        work.extend(
            images
                .keys()
                .map(|(ns, n)| Node::Image(ns.clone(), n.clone())),
        );
        for (ns, c) in &containers {
            if !c.snapshot_key.is_empty() {
                work.push(Node::Snapshot(
                    ns.clone(),
                    c.snapshotter.clone(),
                    c.snapshot_key.clone(),
                ));
            }
            if !c.image.is_empty() {
                work.push(Node::Image(ns.clone(), c.image.clone()));
            }
            label_refs(ns, &c.labels, &mut work);
        }
        let resources = txn.open_table(schema::LEASE_RESOURCES)?;
        let mut expired = Vec::new();
        for (ns, lease) in &leases {
            if lease.expires_at.is_some_and(|t| t <= now) {
                expired.push((ns.clone(), lease.id.clone()));
                continue;
            }
            for r in resources_of(&resources, ns, &lease.id)? {
                match r {
                    LeaseResource::Content(d) => {
                        work.push(Node::Content(ns.clone(), d.to_string()))
                    }
                    LeaseResource::Snapshot { snapshotter, key } => {
                        work.push(Node::Snapshot(ns.clone(), snapshotter, key))
                    }
                    LeaseResource::Ingest(_) => {}
                }
            }
        }
        drop(resources);
        for ((ns, d), rec) in &content {
            if rec.labels.contains_key(LABEL_ROOT) {
                work.push(Node::Content(ns.clone(), d.clone()));
            }
        }
        for ((ns, sn, key), rec) in &snaps {
            if rec.labels.contains_key(LABEL_ROOT) {
                work.push(Node::Snapshot(ns.clone(), sn.clone(), key.clone()));
            }
        }

        // Mark.
        let mut marked: HashSet<Node> = HashSet::new();
        while let Some(node) = work.pop() {
            if !marked.insert(node.clone()) {
                continue;
            }
            match &node {
                Node::Image(ns, name) => {
                    if let Some(img) = images.get(&(ns.clone(), name.clone())) {
                        work.push(Node::Content(ns.clone(), img.target.digest.to_string()));
                        label_refs(ns, &img.labels, &mut work);
                    }
                }
                Node::Content(ns, d) => {
                    if let Some(rec) = content.get(&(ns.clone(), d.clone())) {
                        label_refs(ns, &rec.labels, &mut work);
                    }
                }
                Node::Snapshot(ns, sn, key) => {
                    if let Some(rec) = snaps.get(&(ns.clone(), sn.clone(), key.clone())) {
                        if let Some(p) = &rec.parent {
                            work.push(Node::Snapshot(ns.clone(), sn.clone(), p.clone()));
                        }
                        label_refs(ns, &rec.labels, &mut work);
                    }
                }
            }
        }

        // Sweep the records.
        let mut ct = txn.open_table(schema::CONTENT)?;
        let mut live_digests = BTreeSet::new();
        for (ns, d) in content.keys() {
            if marked.contains(&Node::Content(ns.clone(), d.clone())) {
                live_digests.insert(d.clone());
            } else {
                crate::failpoint::hit("gc.sweep.record");
                ct.remove((ns.as_str(), d.as_str()))?;
                report.content_records.push((ns.clone(), d.clone()));
            }
        }
        let mut st = txn.open_table(schema::SNAPSHOTS)?;
        let mut live_backend = BTreeSet::new();
        let mut removed = Vec::new();
        for ((ns, sn, key), rec) in &snaps {
            if marked.contains(&Node::Snapshot(ns.clone(), sn.clone(), key.clone())) {
                live_backend.insert((sn.clone(), rec.backend_key.clone()));
            } else {
                st.remove((ns.as_str(), sn.as_str(), key.as_str()))?;
                removed.push((depth(&snaps, ns, sn, key), rec.clone(), ns.clone()));
            }
        }
        let mut lt = txn.open_table(schema::LEASES)?;
        for (ns, id) in expired {
            lt.remove((ns.as_str(), id.as_str()))?;
            delete_resources(txn, &ns, &id)?;
            report.expired_leases.push((ns, id));
        }
        // Children (deeper) first, so a backend never sees its parent go before it.
        removed.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok((removed, live_digests, live_backend))
    })?;

    if let Some(reason) = db.sweep_suspended() {
        tracing::warn!("gc: {reason}");
        report.suspended = Some(reason);
        report.duration = started.elapsed();
        return Ok(report);
    }

    // Sweep the blobs: those no namespace records any more.
    match store.list() {
        Err(e) => report.errors.push(format!("list blobs: {}", chain(&e))),
        Ok(blobs) => {
            for info in blobs {
                if live_digests.contains(&info.digest.to_string()) {
                    continue;
                }
                crate::failpoint::hit("gc.sweep.blob");
                match store.delete(&info.digest) {
                    Ok(()) => {
                        report.bytes_freed += info.size;
                        report.blobs.push(info.digest.to_string());
                    }
                    Err(crate::content::Error::NotFound { .. }) => {}
                    Err(e) => {
                        report
                            .errors
                            .push(format!("delete blob {}: {}", info.digest, chain(&e)))
                    }
                }
            }
        }
    }

    // Sweep the backend snapshots: first those whose records were just removed (children
    // first), then any other backend snapshot no record names (left by a crash between a
    // record's removal and its snapshot's).
    let mut gone: BTreeSet<(String, String)> = BTreeSet::new();
    for (_, rec, ns) in removed_snaps {
        let id = (rec.snapshotter.clone(), rec.backend_key.clone());
        report.snapshot_records.push(RemovedSnapshot {
            namespace: ns,
            snapshotter: rec.snapshotter.clone(),
            key: rec.key.clone(),
            backend_key: rec.backend_key.clone(),
        });
        if live_backend.contains(&id) || gone.contains(&id) {
            continue;
        }
        match sweeper.remove(&rec.snapshotter, &rec.backend_key) {
            Ok(()) => {
                report.backend_snapshots.push(id.clone());
                gone.insert(id);
            }
            Err(e) => report.errors.push(format!(
                "remove snapshot {:?} from snapshotter {:?}: {}",
                rec.backend_key,
                rec.snapshotter,
                chain(e.as_ref())
            )),
        }
    }
    for sn in sweeper.snapshotters() {
        let keys = match sweeper.backend_keys(&sn) {
            Ok(k) => k,
            Err(e) => {
                report.errors.push(format!(
                    "list snapshots of snapshotter {sn:?}: {}",
                    chain(e.as_ref())
                ));
                continue;
            }
        };
        for key in keys.into_iter().rev() {
            let id = (sn.clone(), key);
            if live_backend.contains(&id) || gone.contains(&id) {
                continue;
            }
            match sweeper.remove(&id.0, &id.1) {
                Ok(()) => {
                    report.backend_snapshots.push(id.clone());
                    gone.insert(id);
                }
                Err(e) => report.errors.push(format!(
                    "remove orphaned snapshot {:?} from snapshotter {sn:?}: {}",
                    id.1,
                    chain(e.as_ref())
                )),
            }
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// Length of a snapshot's parent chain within the records (cycles cannot be created, since a
/// parent must exist before its child; the bound only guards against a corrupt file).
fn depth(snaps: &BTreeMap<Key3, SnapshotRecord>, ns: &str, sn: &str, key: &str) -> usize {
    let mut d = 0;
    let mut cur = snaps.get(&(ns.to_owned(), sn.to_owned(), key.to_owned()));
    while let Some(rec) = cur {
        d += 1;
        if d > snaps.len() {
            break;
        }
        cur = rec
            .parent
            .as_ref()
            .and_then(|p| snaps.get(&(ns.to_owned(), sn.to_owned(), p.clone())));
    }
    d
}

/// Bytes available to unprivileged users on the filesystem holding `path` (statvfs).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path)?;
    // Both are u64 on Linux/glibc and musl (fsblkcnt_t, unsigned long).
    #[allow(clippy::useless_conversion)]
    let free = u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size()));
    Ok(free)
}

/// When the scheduler collects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Collect at least this often (`None`: only on request or low space).
    pub interval: Option<Duration>,
    /// Collect when the filesystem of the root has less free space than this.
    pub min_free_bytes: Option<u64>,
    /// How often the free space is checked.
    pub poll: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(3600)),
            min_free_bytes: None,
            poll: Duration::from_secs(30),
        }
    }
}

/// Asks the scheduler for a collection soon; services call [`Trigger::request`] after
/// deletes. Requests made while a collection runs coalesce into one more.
#[derive(Debug, Clone, Default)]
pub struct Trigger(Arc<tokio::sync::Notify>);

impl Trigger {
    /// Requests a collection.
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Why the scheduler collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Requested,
    Interval,
    LowSpace { free: u64, min: u64 },
}

/// What the scheduler should do now, given when it last collected.
pub fn due(schedule: &Schedule, root: &Path, last: Instant) -> Option<Reason> {
    if let Some(min) = schedule.min_free_bytes {
        match free_bytes(root) {
            Ok(free) if free < min => return Some(Reason::LowSpace { free, min }),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %root.display(), error = %e, "gc: cannot read free space")
            }
        }
    }
    match schedule.interval {
        Some(i) if last.elapsed() >= i => Some(Reason::Interval),
        _ => None,
    }
}

/// The collection loop the daemon spawns: collects on request, at the interval and when
/// free space under `root` is low; runs until its task is dropped. Each report is logged.
pub async fn run_scheduler(
    schedule: Schedule,
    root: PathBuf,
    db: Arc<Db>,
    store: Arc<crate::content::LocalStore>,
    sweeper: Arc<dyn SnapshotSweeper>,
    trigger: Trigger,
    mut on_report: impl FnMut(&Reason, &Result<GcReport>) + Send,
) {
    let mut last = Instant::now();
    loop {
        let reason = tokio::select! {
            _ = trigger.0.notified() => Some(Reason::Requested),
            _ = tokio::time::sleep(schedule.poll) => due(&schedule, &root, last),
        };
        let Some(reason) = reason else { continue };
        let (db2, store2, sweeper2) = (db.clone(), store.clone(), sweeper.clone());
        let res =
            tokio::task::spawn_blocking(move || collect(&db2, store2.as_ref(), sweeper2.as_ref()))
                .await
                .unwrap_or_else(|e| {
                    Err(super::Error::FailedPrecondition(format!(
                        "gc task failed: {e}"
                    )))
                });
        match &res {
            Ok(r) => tracing::info!(
                ?reason,
                blobs = r.blobs.len(),
                bytes_freed = r.bytes_freed,
                snapshots = r.backend_snapshots.len(),
                errors = r.errors.len(),
                ms = r.duration.as_millis() as u64,
                "gc: collected"
            ),
            Err(e) => tracing::error!(?reason, error = %chain(e), "gc: collection failed"),
        }
        on_report(&reason, &res);
        last = Instant::now();
    }
}
