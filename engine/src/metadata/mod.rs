//! berth's metadata database: namespaces, images, content records, snapshot records,
//! containers and leases, in one redb file at `<root>/metadata.redb`.
//!
//! The model is containerd's (`core/metadata`): every object lives in a namespace; a blob in
//! the shared content store is visible in a namespace only through that namespace's content
//! record; snapshots are recorded per (namespace, snapshotter, key) and point at a backend
//! key the snapshotter owns. Every mutation is one write transaction, so readers never see
//! half of one.
//!
//! Entry points: [`Db::open`] (schema check and migration), the per-kind handles
//! ([`Db::namespaces`], [`Db::images`], [`Db::content`], [`Db::snapshots`],
//! [`Db::containers`], [`Db::leases`]), [`Db::reconcile`] at start, and [`gc::collect`].
//!
//! # Ordering rule between the database and the disk
//! A crash may stop berthd between a database commit and a filesystem change. The order is
//! chosen so that the state left behind is never visible half-done:
//! - **create**: write the blob (or backend snapshot) first, then commit its record. A crash
//!   in between leaves an unreferenced blob, invisible in every namespace, removed by the next
//!   garbage collection.
//! - **delete**: commit the record's removal first, then remove the blob (or snapshot). A crash
//!   in between again leaves an unreferenced blob for the collector.
//!
//! [`Db::reconcile`] handles the one case the order cannot: a record whose blob vanished
//! (disk damage, manual deletion) is removed at start and reported. Creators hold
//! [`Db::resource_guard`] from writing a blob until its record is committed, so a concurrent
//! collection cannot mistake the fresh blob for garbage.

mod containers;
mod content;
mod error;
pub mod gc;
mod images;
mod leases;
mod namespaces;
mod records;
mod schema;
mod snapshots;
pub mod validate;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use redb::{ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use containers::Containers;
pub use content::ContentRecords;
pub use error::{Error, Result};
pub use images::Images;
pub use leases::Leases;
pub use namespaces::Namespaces;
pub use records::{
    Container, ContentRecord, Descriptor, Image, Labels, Lease, LeaseResource, Namespace,
    SnapshotRecord,
};
pub use schema::{copy_path, Opened, OLDEST_MIGRATABLE, SCHEMA_VERSION, WRITE_COMPAT};
pub use snapshots::Snapshots;

use crate::content::{Digest, Manager};

/// The namespace used when a client names none (containerd's default); the wire contract's
/// fact, re-exported.
pub use berth_api::keys::DEFAULT_NAMESPACE;

/// The open metadata database.
pub struct Db {
    inner: redb::Database,
    path: PathBuf,
    opened: Opened,
    /// Files kept aside by a rollback from a newer schema (see [`schema`]); while any exists
    /// the collector deletes no blob or backend snapshot.
    kept_newer: Vec<PathBuf>,
    guard: RwLock<()>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.path)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

/// Held by anything that creates a blob or backend snapshot until its record is committed;
/// the collector takes the exclusive side while it sweeps (see the module docs).
pub type ResourceGuard<'a> = RwLockReadGuard<'a, ()>;

/// What [`Db::reconcile`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Content records removed because their blob is missing: (namespace, digest).
    pub removed_content_records: Vec<(String, String)>,
}

impl Db {
    /// The database file's name under the engine's root.
    pub const FILE: &'static str = "metadata.redb";

    /// Opens (creating if needed) `<root>/metadata.redb` and checks its schema version:
    /// a fresh file is initialised, an older known version migrated in one transaction, a
    /// newer version refused with [`Error::SchemaTooNew`] and left untouched.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        fs::create_dir_all(root).map_err(|e| Error::Database {
            path: root.join(Self::FILE),
            op: "create its directory".into(),
            source: Box::new(redb::StorageError::from(e).into()),
        })?;
        Self::open_file(root.join(Self::FILE))
    }

    /// Opens the database at an explicit path (see [`Db::open`]).
    ///
    /// Before a migration the file is saved as `<file>.schema-<old>`; a newer file this binary
    /// may not write is replaced by such a saved copy when one exists (a rollback, kept
    /// beside it) and refused unchanged otherwise; a file this version kept before a rollback
    /// is merged back. See [`schema`] for the rules.
    pub fn open_file(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mut rolled_back = None;
        // The stamp is read read-only first, so a refused file is never written to (a
        // writable open may touch redb's header even when nothing is committed).
        if path.exists() {
            match schema::probe(&path)? {
                Some(st) if !st.writable_here() => {
                    let kept = schema::restore_copy(&path, st)?;
                    tracing::warn!(
                        path = %path.display(),
                        found = st.version,
                        kept = %kept.display(),
                        "metadata: schema version {} was written by a newer berthd that this \
                         one (version {SCHEMA_VERSION}) may not write; rolled back to the copy \
                         saved before its migration and kept the newer file as {} (it is \
                         merged back when the newer berthd runs again; until then no blob or \
                         snapshot is garbage-collected)",
                        st.version,
                        kept.display()
                    );
                    rolled_back = Some(st.version);
                }
                Some(st) if st.version < SCHEMA_VERSION && st.version >= OLDEST_MIGRATABLE => {
                    let copy = schema::save_copy(&path, st.version)?;
                    tracing::info!(path = %path.display(), copy = %copy.display(),
                        "metadata: saved the schema {} file before migrating it", st.version);
                }
                _ => {}
            }
        }
        let inner =
            redb::Database::create(&path).map_err(|e| Error::from(e).in_db(&path, "open"))?;
        let txn = inner
            .begin_write()
            .map_err(|e| Error::from(e).in_db(&path, "check schema version"))?;
        let mut opened = schema::check_and_migrate(&txn, &path)
            .map_err(|e| e.in_db(&path, "check schema version"))?;
        if matches!(opened, Opened::Initialised | Opened::Migrated { .. }) {
            txn.commit()
                .map_err(|e| Error::from(e).in_db(&path, "initialise or migrate schema"))?;
        } else {
            drop(txn);
        }
        match opened {
            Opened::Initialised => {
                tracing::info!(path = %path.display(), version = SCHEMA_VERSION, "metadata: initialised")
            }
            Opened::Migrated { from } => {
                tracing::info!(path = %path.display(), from, to = SCHEMA_VERSION, "metadata: schema migrated")
            }
            Opened::NewerCompatible { found } => tracing::info!(
                path = %path.display(),
                "metadata: schema version {found} was written by a newer berthd and may be \
                 written by this one (version {SCHEMA_VERSION}); used as it is"
            ),
            Opened::Current | Opened::RolledBack { .. } => {}
        }
        if let Some(found) = rolled_back {
            opened = Opened::RolledBack { found };
        }
        if let Some((kept, n)) = schema::merge_kept(&inner, &path)? {
            tracing::info!(
                path = %path.display(),
                "metadata: merged {n} records from {} (this version's file, kept by a \
                 rollback to an older berthd) and removed it",
                kept.display()
            );
        }
        let kept_newer = schema::kept_newer(&path);
        Ok(Self {
            inner,
            path,
            opened,
            kept_newer,
            guard: RwLock::new(()),
        })
    }

    /// Why the collector must not delete blobs or backend snapshots, if it must not: a newer
    /// berthd's file is kept aside after a rollback, and what only it records must survive.
    pub fn sweep_suspended(&self) -> Option<String> {
        if self.kept_newer.is_empty() {
            return None;
        }
        let files: Vec<String> = self
            .kept_newer
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Some(format!(
            "blob and snapshot sweep suspended: {} kept from a newer berthd after a rollback \
             (merged back when it runs again)",
            files.join(", ")
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the schema check at open did.
    pub fn opened(&self) -> Opened {
        self.opened
    }

    /// Namespaces.
    pub fn namespaces(&self) -> Namespaces<'_> {
        Namespaces { db: self }
    }

    /// Images.
    pub fn images(&self) -> Images<'_> {
        Images { db: self }
    }

    /// Content records.
    pub fn content(&self) -> ContentRecords<'_> {
        ContentRecords { db: self }
    }

    /// Snapshot records.
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots { db: self }
    }

    /// Containers.
    pub fn containers(&self) -> Containers<'_> {
        Containers { db: self }
    }

    /// Leases.
    pub fn leases(&self) -> Leases<'_> {
        Leases { db: self }
    }

    /// Shared guard for creators (see the module docs). Hold it from before the blob or
    /// backend snapshot is written until its record is committed.
    pub fn resource_guard(&self) -> ResourceGuard<'_> {
        self.guard.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn exclusive_guard(&self) -> RwLockWriteGuard<'_, ()> {
        self.guard.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes content records whose blob is missing from `store` (one transaction) and
    /// reports them. Blobs without records are left for [`gc::collect`].
    pub fn reconcile(&self, store: &impl Manager) -> Result<ReconcileReport> {
        let _g = self.exclusive_guard();
        self.write("reconcile content records", |txn| {
            let mut t = txn.open_table(schema::CONTENT)?;
            let mut missing = Vec::new();
            for item in t.iter()? {
                let (k, _) = item?;
                let (ns, d) = k.value();
                let digest: Digest = match d.parse() {
                    Ok(d) => d,
                    // A key that is not a digest names no blob: the record is unusable.
                    Err(_) => {
                        missing.push((ns.to_owned(), d.to_owned()));
                        continue;
                    }
                };
                match store.info(&digest) {
                    Ok(_) => {}
                    Err(crate::content::Error::NotFound { .. }) => {
                        missing.push((ns.to_owned(), d.to_owned()))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            for (ns, d) in &missing {
                t.remove((ns.as_str(), d.as_str()))?;
                tracing::warn!(namespace = %ns, digest = %d, "metadata: removed a content record whose blob is missing");
            }
            Ok(ReconcileReport {
                removed_content_records: missing,
            })
        })
    }

    /// Removes snapshot records whose backend snapshot is missing from the snapshotters
    /// `sweeper` manages, and the records of their descendants (a child without its parent is
    /// unusable), in one transaction; reports them. Backend snapshots without records are
    /// left for [`gc::collect`]. A snapshotter whose snapshots cannot be listed is skipped
    /// (its records are kept) and logged.
    pub fn reconcile_snapshots(
        &self,
        sweeper: &dyn gc::SnapshotSweeper,
    ) -> Result<Vec<gc::RemovedSnapshot>> {
        let _g = self.exclusive_guard();
        let mut present = std::collections::BTreeMap::new();
        for sn in sweeper.snapshotters() {
            match sweeper.backend_keys(&sn) {
                Ok(keys) => {
                    present.insert(
                        sn,
                        keys.into_iter().collect::<std::collections::BTreeSet<_>>(),
                    );
                }
                Err(e) => {
                    tracing::warn!(snapshotter = %sn, error = %e, "metadata: cannot list backend snapshots; their records are kept")
                }
            }
        }
        self.write("reconcile snapshot records", |txn| {
            let mut t = txn.open_table(schema::SNAPSHOTS)?;
            let mut all = std::collections::BTreeMap::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let (ns, sn, key) = k.value();
                let rec: SnapshotRecord =
                    decode("snapshots", || format!("{ns}/{sn}/{key}"), v.value())?;
                all.insert((ns.to_owned(), sn.to_owned(), key.to_owned()), rec);
            }
            let mut gone: std::collections::BTreeSet<(String, String, String)> = all
                .iter()
                .filter(|((_, sn, _), rec)| {
                    present
                        .get(sn)
                        .is_some_and(|keys| !keys.contains(&rec.backend_key))
                })
                .map(|(k, _)| k.clone())
                .collect();
            // Descendants of a removed record, until nothing changes.
            loop {
                let more: Vec<_> = all
                    .iter()
                    .filter(|(k, rec)| {
                        !gone.contains(*k)
                            && rec.parent.as_ref().is_some_and(|p| {
                                gone.contains(&(k.0.clone(), k.1.clone(), p.clone()))
                            })
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                if more.is_empty() {
                    break;
                }
                gone.extend(more);
            }
            let mut removed = Vec::new();
            for k in gone {
                t.remove((k.0.as_str(), k.1.as_str(), k.2.as_str()))?;
                let rec = &all[&k];
                tracing::warn!(namespace = %k.0, snapshotter = %k.1, key = %k.2, "metadata: removed a snapshot record whose backend snapshot (or parent) is missing");
                removed.push(gc::RemovedSnapshot {
                    namespace: k.0.clone(),
                    snapshotter: k.1.clone(),
                    key: k.2.clone(),
                    backend_key: rec.backend_key.clone(),
                });
            }
            Ok(removed)
        })
    }

    /// Runs `f` in one write transaction, committed when `f` succeeds and aborted otherwise.
    pub(crate) fn write<T>(
        &self,
        op: &str,
        f: impl FnOnce(&WriteTransaction) -> Result<T>,
    ) -> Result<T> {
        let txn = self
            .inner
            .begin_write()
            .map_err(|e| Error::from(e).in_db(&self.path, op))?;
        let out = f(&txn).map_err(|e| e.in_db(&self.path, op))?;
        crate::failpoint::hit("metadata.before_commit");
        txn.commit()
            .map_err(|e| Error::from(e).in_db(&self.path, op))?;
        Ok(out)
    }

    /// Runs `f` in one read transaction (a consistent snapshot).
    pub(crate) fn read<T>(
        &self,
        op: &str,
        f: impl FnOnce(&ReadTransaction) -> Result<T>,
    ) -> Result<T> {
        let txn = self
            .inner
            .begin_read()
            .map_err(|e| Error::from(e).in_db(&self.path, op))?;
        f(&txn).map_err(|e| e.in_db(&self.path, op))
    }
}

/// Serialises a record. Records hold only strings, numbers and maps with string keys, which
/// JSON always represents.
pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("metadata records always serialise to JSON")
}

/// Deserialises a record, naming its table and key when it is corrupt.
pub(crate) fn decode<T: DeserializeOwned>(
    table: &'static str,
    key: impl FnOnce() -> String,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        table,
        key: key(),
        source,
    })
}

/// Makes sure a record for namespace `ns` exists; objects created in a namespace create it,
/// as in containerd.
pub(crate) fn ensure_namespace(txn: &WriteTransaction, ns: &str) -> Result<()> {
    validate::identifier("namespace", ns)?;
    let mut t = txn.open_table(schema::NAMESPACES)?;
    if t.get(ns)?.is_none() {
        let now = std::time::SystemTime::now();
        let rec = Namespace {
            name: ns.to_owned(),
            labels: Labels::new(),
            created_at: now,
            updated_at: now,
        };
        t.insert(ns, encode(&rec).as_slice())?;
    }
    Ok(())
}

/// Applies a label update with containerd's field paths: none or `labels` replaces all
/// labels, `labels.<key>` sets (or, when absent from `new`, removes) one key. Returns the
/// paths it did not handle, for the caller's own fields.
pub(crate) fn apply_label_paths<'p>(
    current: &mut Labels,
    new: &Labels,
    paths: &'p [String],
) -> Vec<&'p str> {
    if paths.is_empty() {
        current.clone_from(new);
        return Vec::new();
    }
    let mut rest = Vec::new();
    for p in paths {
        if p == "labels" {
            current.clone_from(new);
        } else if let Some(k) = p.strip_prefix("labels.") {
            match new.get(k) {
                Some(v) => {
                    current.insert(k.to_owned(), v.clone());
                }
                None => {
                    current.remove(k);
                }
            }
        } else {
            rest.push(p.as_str());
        }
    }
    rest
}

/// The error for an update field path a kind does not support.
pub(crate) fn bad_field(kind: &str, field: &str, allowed: &str) -> Error {
    Error::InvalidArgument(format!(
        "cannot update field {field:?} of {kind}: updatable fields are {allowed}"
    ))
}
