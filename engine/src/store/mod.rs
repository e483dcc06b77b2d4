//! The engine's persistent store: the content store ([`crate::content`]) and the metadata
//! database ([`crate::metadata`]) opened together under `root`, with the garbage collector's
//! trigger and schedule.
//!
//! [`Store::open_with`] opens both at start (schema check, reconcile against the blobs and the
//! snapshotters). The operations that touch both, or that ask for a collection after a
//! delete, are here ([`ops`]), under the Content, Images and Leases services; single-table
//! reads and writes go through the metadata handles (`store.db.images()`, …) directly, and
//! import and pull write blobs, records and leases themselves in the same order.
//!
//! (Not to be confused with the state disk init mounts on `/var`, nor with a snapshotter's
//! metastore.)

pub mod ops;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::content::LocalStore;
use crate::metadata::gc::{NoSnapshotters, Schedule, SnapshotSweeper, Trigger};
use crate::metadata::{self, Db};
use crate::plugins::{Registry, Status};

pub use ops::Error;

/// The plugin section configuring the collector's schedule.
pub const GC_PLUGIN: &str = "berth.gc.v1.scheduler";

/// Errors opening the store at start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
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

impl OpenError {
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

/// The opened store and what its users share.
pub struct Store {
    pub db: Arc<Db>,
    pub content: Arc<LocalStore>,
    /// Backend snapshots for the collector; [`NoSnapshotters`] until snapshotters are wired.
    pub sweeper: Arc<dyn SnapshotSweeper>,
    pub gc: Trigger,
    pub schedule: Schedule,
    root: PathBuf,
}

impl Store {
    /// Opens the content store and the metadata database under `root`, reconciles them, and
    /// reads the collector's schedule from `[plugins."berth.gc.v1.scheduler"]`:
    /// `interval_secs` (0 disables; default 3600), `min_free_bytes` (default none),
    /// `poll_secs` (default 30).
    pub fn open(root: &Path, plugins: &BTreeMap<String, toml::Value>) -> Result<Self, OpenError> {
        Self::open_with(root, plugins, Arc::new(NoSnapshotters))
    }

    /// [`Store::open`] with the snapshotters' sweeper: snapshot records whose backend
    /// snapshot is missing are reconciled too, and the collector removes backend snapshots.
    pub fn open_with(
        root: &Path,
        plugins: &BTreeMap<String, toml::Value>,
        sweeper: Arc<dyn SnapshotSweeper>,
    ) -> Result<Self, OpenError> {
        let schedule = schedule(plugins.get(GC_PLUGIN))?;
        let content = LocalStore::open(root).map_err(|source| OpenError::Content {
            root: root.to_path_buf(),
            source: Box::new(source),
        })?;
        let db = Db::open(root).map_err(OpenError::Metadata)?;
        let report = db.reconcile(&content).map_err(OpenError::Metadata)?;
        if !report.removed_content_records.is_empty() {
            tracing::warn!(removed = ?report.removed_content_records, "storage: removed records of missing blobs");
        }
        db.reconcile_snapshots(sweeper.as_ref())
            .map_err(OpenError::Metadata)?;
        Ok(Self {
            db: Arc::new(db),
            content: Arc::new(content),
            sweeper,
            gc: Trigger::default(),
            schedule,
            root: root.to_path_buf(),
        })
    }

    /// Records the store's plugins (and its services') for Introspection.
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
pub fn schedule(section: Option<&toml::Value>) -> Result<Schedule, OpenError> {
    let mut s = Schedule::default();
    let Some(section) = section else {
        return Ok(s);
    };
    let bad = |key: &str, reason: String| OpenError::BadConfig {
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
}
