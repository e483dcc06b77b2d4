//! berthd's storage services over ttrpc: Namespaces, Images, Leases, Content and GC, on top of
//! the metadata database ([`crate::metadata`]) and the content store ([`crate::content`]).
//!
//! [`Storage`] opens both at start (schema check, reconcile), owns the garbage-collection
//! trigger and scheduler, and registers the services and their plugin entries. Every handler
//! maps typed errors to precise ttrpc codes ([`crate::metadata::Error::code`]).
//!
//! The namespace of a request comes from its ttrpc metadata, key `berth-namespace` or
//! containerd's `containerd-namespace-ttrpc`; `default` when absent. A content write may name
//! a lease in `berth-lease` (or containerd's `containerd-lease`): the committed blob is
//! attached to it, so it survives collection until the lease goes.

mod content;
mod gc;
mod images;
mod leases;
mod namespaces;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ttrpc::r#async::TtrpcContext;

use berth_api::proto::{content_ttrpc, gc_ttrpc, images_ttrpc, leases_ttrpc, namespaces_ttrpc};
use crate::content::LocalStore;
use crate::metadata::gc::{NoSnapshotters, Schedule, SnapshotSweeper, Trigger};
use crate::metadata::{self, validate, Db, DEFAULT_NAMESPACE};
use crate::plugins::{Registry, Status};

/// Metadata keys carrying the namespace, in order of preference.
pub const NAMESPACE_KEYS: &[&str] = &["berth-namespace", "containerd-namespace-ttrpc"];
/// Metadata keys carrying a lease id.
pub const LEASE_KEYS: &[&str] = &["berth-lease", "containerd-lease"];
pub use berth_api::MAX_CHUNK;
/// The plugin section configuring the collector's schedule.
pub const GC_PLUGIN: &str = "berth.gc.v1.scheduler";

/// Errors opening the storage at start.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the content store under {}", root.display())]
    Content {
        root: PathBuf,
        #[source]
        source: Box<crate::content::Error>,
    },
    #[error("cannot open the metadata database")]
    Metadata(#[source] metadata::Error),
    #[error("[plugins.\"{GC_PLUGIN}\"] {key}: {reason}")]
    BadConfig { key: String, reason: String },
}

impl StorageError {
    /// Whether restarting berthd cannot help (a newer or foreign schema, a bad setting), so
    /// berthd exits with [`berth_api::EXIT_CONFIG`] and init stops restarting it.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::BadConfig { .. }
                | Self::Metadata(
                    metadata::Error::SchemaTooNew { .. } | metadata::Error::BadSchema { .. }
                )
        )
    }
}

/// The opened storage and what its services share.
pub struct Storage {
    pub db: Arc<Db>,
    pub content: Arc<LocalStore>,
    /// Backend snapshots for the collector; [`NoSnapshotters`] until snapshotters are wired.
    pub sweeper: Arc<dyn SnapshotSweeper>,
    pub gc: Trigger,
    pub schedule: Schedule,
    root: PathBuf,
}

impl Storage {
    /// Opens the content store and the metadata database under `root`, reconciles them, and
    /// reads the collector's schedule from `[plugins."berth.gc.v1.scheduler"]`:
    /// `interval_secs` (0 disables; default 3600), `min_free_bytes` (default none),
    /// `poll_secs` (default 30).
    pub fn open(
        root: &Path,
        plugins: &BTreeMap<String, toml::Value>,
    ) -> Result<Self, StorageError> {
        Self::open_with(root, plugins, Arc::new(NoSnapshotters))
    }

    /// [`Storage::open`] with the snapshotters' sweeper: snapshot records whose backend
    /// snapshot is missing are reconciled too, and the collector removes backend snapshots.
    pub fn open_with(
        root: &Path,
        plugins: &BTreeMap<String, toml::Value>,
        sweeper: Arc<dyn SnapshotSweeper>,
    ) -> Result<Self, StorageError> {
        let schedule = schedule(plugins.get(GC_PLUGIN))?;
        let content = LocalStore::open(root).map_err(|source| StorageError::Content {
            root: root.to_path_buf(),
            source: Box::new(source),
        })?;
        let db = Db::open(root).map_err(StorageError::Metadata)?;
        let report = db.reconcile(&content).map_err(StorageError::Metadata)?;
        if !report.removed_content_records.is_empty() {
            tracing::warn!(removed = ?report.removed_content_records, "storage: removed records of missing blobs");
        }
        db.reconcile_snapshots(sweeper.as_ref())
            .map_err(StorageError::Metadata)?;
        Ok(Self {
            db: Arc::new(db),
            content: Arc::new(content),
            sweeper,
            gc: Trigger::default(),
            schedule,
            root: root.to_path_buf(),
        })
    }

    /// Records the storage plugins for Introspection.
    pub fn register_plugins(&self, r: &mut Registry) {
        let c = r.register("berth.content.v1", "content", Status::Ok);
        c.exports
            .insert("root".into(), self.content.root().display().to_string());
        let m = r.register("berth.metadata.v1", "redb", Status::Ok);
        m.exports
            .insert("path".into(), self.db.path().display().to_string());
        m.exports.insert(
            "schema_version".into(),
            metadata::SCHEMA_VERSION.to_string(),
        );
        let g = r.register("berth.gc.v1", "scheduler", Status::Ok);
        if let Some(i) = self.schedule.interval {
            g.exports
                .insert("interval_secs".into(), i.as_secs().to_string());
        }
        if let Some(m) = self.schedule.min_free_bytes {
            g.exports.insert("min_free_bytes".into(), m.to_string());
        }
        for id in ["namespaces", "images", "leases", "content", "gc"] {
            r.register("berth.service.v1", id, Status::Ok);
        }
    }

    /// Adds the storage services to `server`.
    pub fn register_services(
        self: &Arc<Self>,
        server: ttrpc::r#async::Server,
    ) -> ttrpc::r#async::Server {
        server
            .register_service(namespaces_ttrpc::create_namespaces(Arc::new(
                namespaces::Service(self.clone()),
            )))
            .register_service(images_ttrpc::create_images(Arc::new(images::Service(
                self.clone(),
            ))))
            .register_service(leases_ttrpc::create_leases(Arc::new(leases::Service(
                self.clone(),
            ))))
            .register_service(content_ttrpc::create_content(Arc::new(content::Service(
                self.clone(),
            ))))
            .register_service(gc_ttrpc::create_gc(Arc::new(gc::Service(self.clone()))))
    }

    /// Spawns the collector's scheduler on the current runtime.
    pub fn spawn_scheduler(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(metadata::gc::run_scheduler(
            self.schedule.clone(),
            self.root.clone(),
            self.db.clone(),
            self.content.clone(),
            self.sweeper.clone(),
            self.gc.clone(),
            |_, _| {},
        ))
    }

    /// Runs one collection now (blocking).
    pub fn collect(&self) -> metadata::Result<metadata::gc::GcReport> {
        metadata::gc::collect(&self.db, self.content.as_ref(), self.sweeper.as_ref())
    }
}

/// Reads the collector's schedule from its plugin section (also used by a reload).
pub fn schedule(section: Option<&toml::Value>) -> Result<Schedule, StorageError> {
    let mut s = Schedule::default();
    let Some(section) = section else {
        return Ok(s);
    };
    let bad = |key: &str, reason: String| StorageError::BadConfig {
        key: key.to_owned(),
        reason,
    };
    let table = section
        .as_table()
        .ok_or_else(|| bad("", "expected a table".into()))?;
    for (k, v) in table {
        let n = v
            .as_integer()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| bad(k, format!("expected a non-negative integer, got {v}")))?;
        match k.as_str() {
            "interval_secs" => s.interval = (n > 0).then(|| Duration::from_secs(n)),
            "min_free_bytes" => s.min_free_bytes = Some(n),
            "poll_secs" if n > 0 => s.poll = Duration::from_secs(n),
            "poll_secs" => return Err(bad(k, "must be at least 1".into())),
            _ => {
                return Err(bad(
                    k,
                    "unknown key (expected interval_secs, min_free_bytes, poll_secs)".into(),
                ))
            }
        }
    }
    Ok(s)
}

/// The request's namespace (see the module docs), validated.
pub fn namespace(ctx: &TtrpcContext) -> ttrpc::Result<String> {
    let ns = NAMESPACE_KEYS
        .iter()
        .find_map(|k| ctx.metadata.get(*k).and_then(|v| v.first()))
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    validate::identifier("namespace", &ns).map_err(|e| e.to_ttrpc())?;
    Ok(ns)
}

/// The request's lease, if any.
pub fn lease(ctx: &TtrpcContext) -> Option<String> {
    LEASE_KEYS
        .iter()
        .find_map(|k| ctx.metadata.get(*k).and_then(|v| v.first()))
        .filter(|l| !l.is_empty())
        .cloned()
}

/// Runs blocking database or filesystem work from an async handler without stalling the
/// runtime's other tasks.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Unix nanoseconds (0 before the epoch).
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time of unix nanoseconds; `None` for 0 or less.
pub fn from_nanos(n: i64) -> Option<SystemTime> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
}

/// An INVALID_ARGUMENT status.
pub(crate) fn invalid(msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INVALID_ARGUMENT, msg.into()))
}

/// Maps a metadata error to its ttrpc status.
pub(crate) fn status(e: metadata::Error) -> ttrpc::Error {
    e.to_ttrpc()
}

/// Maps a content store error to its ttrpc status.
pub(crate) fn content_status(e: crate::content::Error) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(
        metadata::content_code(&e),
        metadata::chain(&e),
    ))
}

/// Parses a digest from a request field.
pub(crate) fn digest(field: &str, s: &str) -> ttrpc::Result<crate::content::Digest> {
    s.parse()
        .map_err(|e: crate::content::DigestError| invalid(format!("{field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gc_schedule_from_config() {
        let v: toml::Value = toml::from_str("interval_secs = 0\nmin_free_bytes = 1000\n").unwrap();
        let s = schedule(Some(&v)).unwrap();
        assert_eq!((s.interval, s.min_free_bytes), (None, Some(1000)));
        let v: toml::Value = toml::from_str("interval = 5\n").unwrap();
        let e = schedule(Some(&v)).unwrap_err().to_string();
        assert!(
            e.contains("berth.gc.v1.scheduler") && e.contains("interval: unknown key"),
            "{e}"
        );
        let v: toml::Value = toml::from_str("poll_secs = -1\n").unwrap();
        assert!(schedule(Some(&v)).is_err());
        assert_eq!(schedule(None).unwrap(), Schedule::default());
    }

    #[test]
    fn times_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(from_nanos(nanos(t)), Some(t));
        assert_eq!(from_nanos(0), None);
    }
}
