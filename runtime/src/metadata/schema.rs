//! Tables, key encodings and the schema version with its migrations.
//!
//! The version lives in the `meta` table under `schema_version`. [`check_and_migrate`] runs in
//! the first write transaction of every open: a fresh file is initialised, an older known
//! version is migrated step by step in that same transaction (so a crash leaves the old
//! version intact), and a newer one is refused without writing. The history is in
//! docs/storage.md; a change to a key encoding or a value that old binaries would misread
//! needs a new version and a migration here.

use std::path::Path;

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::{Error, Result};

/// The schema this binary writes.
pub const SCHEMA_VERSION: u64 = 2;
/// Oldest schema this binary can migrate from.
pub const OLDEST_MIGRATABLE: u64 = 1;

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const VERSION_KEY: &str = "schema_version";

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
}

/// Checks the schema version inside `txn` and brings the file to [`SCHEMA_VERSION`].
/// On error nothing was written (the caller drops `txn`, aborting it).
pub(crate) fn check_and_migrate(txn: &WriteTransaction, path: &Path) -> Result<Opened> {
    let found = {
        let meta = txn.open_table(META)?;
        let v = meta.get(VERSION_KEY)?.map(|g| g.value());
        v
    };
    let opened = match found {
        Some(v) if v == SCHEMA_VERSION => return Ok(Opened::Current),
        Some(v) if v > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew {
                path: path.to_path_buf(),
                found: v,
                supported: SCHEMA_VERSION,
            })
        }
        Some(v) if v < OLDEST_MIGRATABLE => {
            return Err(Error::BadSchema {
                path: path.to_path_buf(),
                reason: format!(
                    "schema version {v} is unknown (this berthd migrates versions \
                     {OLDEST_MIGRATABLE} to {SCHEMA_VERSION})"
                ),
            })
        }
        Some(v) => {
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
    txn.open_table(META)?.insert(VERSION_KEY, SCHEMA_VERSION)?;
    Ok(opened)
}

/// Reads the version through a read-only open and refuses a newer one. Files a read-only
/// open cannot read (new, or needing redb's crash repair) are left to the writable open.
pub(crate) fn refuse_if_newer(path: &Path) -> Result<()> {
    use redb::ReadableDatabase;
    let Ok(db) = redb::ReadOnlyDatabase::open(path) else {
        return Ok(());
    };
    let found = (|| -> Result<Option<u64>> {
        let txn = db.begin_read()?;
        let t = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let v = t.get(VERSION_KEY)?.map(|g| g.value());
        Ok(v)
    })()
    .map_err(|e| e.in_db(path, "read schema version"))?;
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(Error::SchemaTooNew {
            path: path.to_path_buf(),
            found: v,
            supported: SCHEMA_VERSION,
        }),
        _ => Ok(()),
    }
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
