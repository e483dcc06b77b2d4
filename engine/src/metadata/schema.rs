//! Tables, key encodings and the schema version with its migrations.
//!
//! The version lives in the `meta` table under `schema_version`, next to `write_compat`: the
//! oldest schema version whose berthd may still read and write the file (SQLite's "write
//! version", ext4's compatible feature flags). [`check_and_migrate`] runs in the first write
//! transaction of every open: a fresh file is initialised, an older known version is
//! migrated step by step in that same transaction (so a crash leaves the old version intact),
//! a newer one whose `write_compat` this binary meets is used as it is (never downgraded), and
//! any other newer one is refused without writing. The history is in docs/storage.md; a
//! change to a key encoding or a value that old binaries would misread needs a new version, a
//! migration here and a raised [`WRITE_COMPAT`].
//!
//! Rollback across an incompatible bump (an A/B slot switch back to an older image) is
//! handled by [`save_copy`] and [`restore_copy`]: every migration first saves the file as it
//! was (`metadata.redb.schema-<old>`); an older berthd that meets a newer file it cannot
//! write puts that copy back and keeps the newer file beside it
//! (`metadata.redb.schema-<newer>`), and the newer berthd merges it back
//! ([`merge_kept`]) when it runs again. While a newer file is kept, the collector does not
//! delete blobs or snapshots (they may be the newer file's).

use std::fs;
use std::path::{Path, PathBuf};

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::{Error, Result};

/// The schema this binary writes.
pub const SCHEMA_VERSION: u64 = 2;
/// Oldest schema this binary can migrate from.
pub const OLDEST_MIGRATABLE: u64 = 1;
/// Oldest schema version whose berthd may read and write a file this binary wrote. Version 1
/// knew no leases: it would collect content a lease protects, so it may not write a version 2
/// file. A later version that only adds tables or optional fields keeps this value, and older
/// slots keep working on its file after a rollback.
pub const WRITE_COMPAT: u64 = 2;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const VERSION_KEY: &str = "schema_version";
pub(crate) const WRITE_COMPAT_KEY: &str = "write_compat";

/// name → JSON [`super::Namespace`].
pub(crate) const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
/// (namespace, name) → JSON [`super::Image`].
pub(crate) const IMAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("images");
/// (namespace, `sha256:<hex>`) → JSON [`super::ContentRecord`].
pub(crate) const CONTENT: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("content");
/// (namespace, snapshotter, key) → JSON [`super::SnapshotRecord`].
pub(crate) const SNAPSHOTS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("snapshots");
/// (namespace, id) → JSON [`super::Container`].
pub(crate) const CONTAINERS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("containers");
/// (namespace, id) → JSON [`super::Lease`]. Since version 2.
pub(crate) const LEASES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("leases");
/// (namespace, lease, type, id) → (): resources attached to a lease, in containerd's
/// (type, id) encoding. Since version 2.
pub(crate) const LEASE_RESOURCES: TableDefinition<(&str, &str, &str, &str), ()> =
    TableDefinition::new("lease_resources");

/// What [`check_and_migrate`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new file, initialised at [`SCHEMA_VERSION`].
    Initialised,
    /// Already at [`SCHEMA_VERSION`].
    Current,
    /// Migrated from this older version.
    Migrated { from: u64 },
    /// Written by a newer berthd at this version whose `write_compat` this binary meets; used
    /// as it is, its version left unchanged.
    NewerCompatible { found: u64 },
    /// A newer file this binary cannot write was kept aside and the copy saved before its
    /// migration put back (an A/B rollback; see the module docs).
    RolledBack { found: u64 },
}

/// The version stamp of a file: its schema version and the oldest version that may write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub version: u64,
    pub write_compat: u64,
}

impl Stamp {
    /// Whether a berthd at [`SCHEMA_VERSION`] may read and write the file.
    pub fn writable_here(&self) -> bool {
        self.version <= SCHEMA_VERSION || self.write_compat <= SCHEMA_VERSION
    }
}

fn read_stamp(meta: &impl ReadableTable<&'static str, u64>) -> Result<Option<Stamp>> {
    let Some(version) = meta.get(VERSION_KEY)?.map(|g| g.value()) else {
        return Ok(None);
    };
    // Files from before `write_compat` existed may be written only by their own version.
    let write_compat = meta
        .get(WRITE_COMPAT_KEY)?
        .map(|g| g.value())
        .unwrap_or(version);
    Ok(Some(Stamp {
        version,
        write_compat,
    }))
}

/// Checks the schema version inside `txn` and brings the file to [`SCHEMA_VERSION`].
/// On error nothing was written (the caller drops `txn`, aborting it).
pub(crate) fn check_and_migrate(txn: &WriteTransaction, path: &Path) -> Result<Opened> {
    let found = read_stamp(&txn.open_table(META)?)?;
    let opened = match found.map(|s| (s.version, s)) {
        Some((v, _)) if v == SCHEMA_VERSION => return Ok(Opened::Current),
        Some((v, stamp)) if v > SCHEMA_VERSION && stamp.writable_here() => {
            return Ok(Opened::NewerCompatible { found: v })
        }
        Some((v, stamp)) if v > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew {
                path: path.to_path_buf(),
                found: v,
                write_compat: stamp.write_compat,
                supported: SCHEMA_VERSION,
                saved: copy_path(path, SCHEMA_VERSION),
            })
        }
        Some((v, _)) if v < OLDEST_MIGRATABLE => {
            return Err(Error::BadSchema {
                path: path.to_path_buf(),
                reason: format!(
                    "schema version {v} is unknown (this berthd migrates versions \
                     {OLDEST_MIGRATABLE} to {SCHEMA_VERSION})"
                ),
            })
        }
        Some((v, _)) => {
            for step in v..SCHEMA_VERSION {
                migrate(txn, step)?;
            }
            Opened::Migrated { from: v }
        }
        None => {
            // A file with data tables but no version was not written by berthd.
            let foreign: Vec<String> = txn
                .list_tables()?
                .map(|t| t.name().to_owned())
                .filter(|n| n != META.name())
                .collect();
            if !foreign.is_empty() {
                return Err(Error::BadSchema {
                    path: path.to_path_buf(),
                    reason: format!(
                        "no schema version, but it holds tables {foreign:?}: not a berth \
                         metadata database"
                    ),
                });
            }
            create_tables(txn)?;
            Opened::Initialised
        }
    };
    let mut meta = txn.open_table(META)?;
    meta.insert(VERSION_KEY, SCHEMA_VERSION)?;
    meta.insert(WRITE_COMPAT_KEY, WRITE_COMPAT)?;
    Ok(opened)
}

/// Reads the version stamp through a read-only open, so a file this binary must not write is
/// never written (a writable open may touch redb's header even when nothing is committed).
/// Files a read-only open cannot read (new, or needing redb's crash repair) give `None` and
/// are left to the writable open.
pub(crate) fn probe(path: &Path) -> Result<Option<Stamp>> {
    use redb::ReadableDatabase;
    let Ok(db) = redb::ReadOnlyDatabase::open(path) else {
        return Ok(None);
    };
    (|| -> Result<Option<Stamp>> {
        let txn = db.begin_read()?;
        let t = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        read_stamp(&t)
    })()
    .map_err(|e| e.in_db(path, "read schema version"))
}

/// Where the file as it was at schema `version` is saved: `<file>.schema-<version>`.
pub fn copy_path(path: &Path, version: u64) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".schema-{version}"));
    path.with_file_name(name)
}

fn io_err(path: &Path, op: &str, e: std::io::Error) -> Error {
    Error::Database {
        path: path.to_path_buf(),
        op: op.to_owned(),
        source: Box::new(redb::StorageError::from(e).into()),
    }
}

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, "sync directory", e))
}

/// Saves the file as it is, before a migration from schema `version`, so that an older berthd
/// can roll back to it ([`restore_copy`]). Written under a temporary name, synced, then renamed
/// over any earlier copy of the same version: a crash leaves the old copy or the new one.
pub(crate) fn save_copy(path: &Path, version: u64) -> Result<PathBuf> {
    let copy = copy_path(path, version);
    let mut tmp = copy.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::copy(path, &tmp).map_err(|e| io_err(&tmp, "save a copy before migrating", e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(&tmp, "sync the saved copy", e))?;
    fs::rename(&tmp, &copy).map_err(|e| io_err(&copy, "save a copy before migrating", e))?;
    sync_dir(path)?;
    Ok(copy)
}

/// Rolls back from a newer file this binary cannot write: the newer file is kept beside it as
/// `<file>.schema-<newer>` (never deleted: the newer berthd merges it back), and the copy
/// saved before the newer berthd migrated ours is put in its place. Without such a copy the
/// file is refused, unchanged. Returns the kept file.
pub(crate) fn restore_copy(path: &Path, found: Stamp) -> Result<PathBuf> {
    let saved = copy_path(path, SCHEMA_VERSION);
    if !saved.exists() {
        return Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: found.version,
            write_compat: found.write_compat,
            supported: SCHEMA_VERSION,
            saved,
        });
    }
    // An earlier rollback's file that was never merged back stays too: `<copy>.<n>`.
    let first = copy_path(path, found.version);
    let mut kept = first.clone();
    let mut n = 1;
    while kept.exists() {
        let mut name = first.clone().into_os_string();
        name.push(format!(".{n}"));
        kept = PathBuf::from(name);
        n += 1;
    }
    fs::rename(path, &kept).map_err(|e| io_err(&kept, "keep the newer file aside", e))?;
    fs::rename(&saved, path).map_err(|e| io_err(&saved, "restore the saved copy", e))?;
    sync_dir(path)?;
    Ok(kept)
}

/// Files kept aside by a rollback from a version newer than this binary
/// (`<file>.schema-<N>[.k]` with N > [`SCHEMA_VERSION`]).
pub(crate) fn kept_newer(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.schema-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix)
                .and_then(|rest| rest.split('.').next().map(str::to_owned))
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| v > SCHEMA_VERSION)
                && !n.ends_with(".tmp")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Merges a file this schema version kept aside before a rollback (`<file>.schema-<ours>`)
/// into the open database: every record it has and the database lacks is inserted, records
/// in both keep the database's value (written later, by the rolled-back version or by this
/// one). Then the kept file is deleted. Returns how many records were inserted, or `None`
/// when there is no such file.
pub(crate) fn merge_kept(db: &redb::Database, path: &Path) -> Result<Option<(PathBuf, u64)>> {
    let kept = copy_path(path, SCHEMA_VERSION);
    if !kept.exists() {
        return Ok(None);
    }
    match probe(&kept)? {
        Some(s) if s.version == SCHEMA_VERSION => {}
        other => {
            return Err(Error::BadSchema {
                path: kept,
                reason: format!(
                    "kept after a rollback, expected schema version {SCHEMA_VERSION}, found {:?}; \
                     move it away to start",
                    other.map(|s| s.version)
                ),
            })
        }
    }
    let src =
        redb::ReadOnlyDatabase::open(&kept).map_err(|e| Error::from(e).in_db(&kept, "open"))?;
    let inserted = (|| -> Result<u64> {
        use redb::ReadableDatabase;
        let from = src.begin_read()?;
        let to = db.begin_write()?;
        let mut n = 0;
        n += merge_table(&from, &to, NAMESPACES)?;
        n += merge_table(&from, &to, IMAGES)?;
        n += merge_table(&from, &to, CONTENT)?;
        n += merge_table(&from, &to, SNAPSHOTS)?;
        n += merge_table(&from, &to, CONTAINERS)?;
        n += merge_table(&from, &to, LEASES)?;
        n += merge_table(&from, &to, LEASE_RESOURCES)?;
        to.commit()?;
        Ok(n)
    })()
    .map_err(|e| e.in_db(path, "merge the file kept before a rollback"))?;
    drop(src);
    fs::remove_file(&kept).map_err(|e| io_err(&kept, "remove after merging", e))?;
    sync_dir(path)?;
    Ok(Some((kept, inserted)))
}

/// Inserts every entry of `def` in `from` whose key `to` lacks.
fn merge_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &redb::ReadTransaction,
    to: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64> {
    let src = match from.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut dst = to.open_table(def)?;
    let mut n = 0;
    for item in src.iter()? {
        let (k, v) = item?;
        if dst.get(k.value())?.is_none() {
            dst.insert(k.value(), v.value())?;
            n += 1;
        }
    }
    Ok(n)
}

/// Creates every table of the current schema (opening a table creates it).
fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(NAMESPACES)?;
    txn.open_table(IMAGES)?;
    txn.open_table(CONTENT)?;
    txn.open_table(SNAPSHOTS)?;
    txn.open_table(CONTAINERS)?;
    txn.open_table(LEASES)?;
    txn.open_table(LEASE_RESOURCES)?;
    Ok(())
}

/// Migrates from version `from` to `from + 1`.
fn migrate(txn: &WriteTransaction, from: u64) -> Result<()> {
    match from {
        // 1 → 2: leases. Version 1 had no way to protect content during a pull; the new
        // tables start empty, and existing records are unchanged.
        1 => {
            txn.open_table(LEASES)?;
            txn.open_table(LEASE_RESOURCES)?;
            Ok(())
        }
        other => unreachable!("no migration from schema version {other}: check OLDEST_MIGRATABLE"),
    }
}

/// Whether `ns` owns any record in a table keyed by (namespace, …).
pub(crate) fn has_prefix2(
    t: &impl redb::ReadableTable<(&'static str, &'static str), &'static [u8]>,
    ns: &str,
) -> Result<bool> {
    Ok(match t.range((ns, "")..)?.next() {
        Some(item) => item?.0.value().0 == ns,
        None => false,
    })
}

/// Every record of namespace `ns` in a table keyed by (namespace, id), in id order.
pub(crate) fn list2<T: serde::de::DeserializeOwned>(
    t: &impl redb::ReadableTable<(&'static str, &'static str), &'static [u8]>,
    table: &'static str,
    ns: &str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for item in t.range((ns, "")..)? {
        let (k, v) = item?;
        let (kns, id) = k.value();
        if kns != ns {
            break;
        }
        out.push(super::decode(table, || format!("{kns}/{id}"), v.value())?);
    }
    Ok(out)
}

/// One record of a table keyed by (namespace, id).
pub(crate) fn get2<T: serde::de::DeserializeOwned>(
    t: &impl redb::ReadableTable<(&'static str, &'static str), &'static [u8]>,
    table: &'static str,
    ns: &str,
    id: &str,
) -> Result<Option<T>> {
    match t.get((ns, id))? {
        Some(v) => Ok(Some(super::decode(
            table,
            || format!("{ns}/{id}"),
            v.value(),
        )?)),
        None => Ok(None),
    }
}
