//! The snapshot metadata store shared by every snapshotter (containerd's
//! `core/snapshots/storage/metastore.go` + `bolt.go`, on redb).
//!
//! One redb file per snapshotter (`<snapshotter root>/metadata.redb`) holds, per snapshot: a
//! numeric id (which names its data on disk: `snapshots/<id>` or a ZFS dataset), its kind, its
//! parent's name, labels, timestamps and, once committed, its disk usage; and a children index
//! (parent name → child keys) so removing a parent is refused without scanning.
//!
//! Every operation is one transaction ([`MetaStore::read`] / [`MetaStore::write`]); a write
//! transaction commits only when its closure returns `Ok`. Snapshotters do their filesystem
//! work *inside* the closure, in an order that leaves nothing visible half-done after a crash:
//!
//! * create: build the data under a temporary name, insert the record, rename the data to its
//!   id, then commit. A crash before the commit leaves a temporary directory or an id with no
//!   record; both are removed when the snapshotter opens.
//! * remove: delete the record and commit, then rename the data to a removal name and delete
//!   it. A crash after the commit leaves data with no record, removed at open. Ids come from a
//!   counter stored in the database and are never reused once committed, so leftover data can
//!   never be mistaken for a newer snapshot.
//!
//! The schema version is checked at open: a database from a newer berth is refused with
//! [`Error::SchemaTooNew`], never rewritten, so an A/B rollback keeps the newer data intact.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};

use super::filter::Filter;
use super::{validate_labels, Error, Info, Kind, Labels, Result, Usage};

/// The schema this binary writes and reads. Bump it (with a migration) when the record layout
/// changes; older binaries then refuse the file instead of misreading it.
pub const SCHEMA_VERSION: u64 = 1;
/// Oldest schema version whose snapshotters may read and write a file this binary wrote (the
/// metadata database's rule, docs/storage.md): a later version that only adds optional fields
/// or tables keeps it, so an A/B rollback keeps working on the newer file. There is no
/// rollback to a saved copy here, unlike the metadata database: a snapshotter removes data
/// its records do not name when it opens, and an old copy would name too little.
pub const WRITE_COMPAT: u64 = 1;

/// The file name of the database inside a snapshotter's root.
pub const FILE_NAME: &str = "metadata.redb";

/// The deepest parent chain accepted, a guard against a damaged database with a parent loop.
const MAX_CHAIN: usize = 4096;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const CHILDREN: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("children");

const META_SCHEMA: &str = "schema_version";
const META_WRITE_COMPAT: &str = "write_compat";
const META_NEXT_ID: &str = "next_id";

/// One snapshot's stored record (JSON in the `snapshots` table, keyed by key or name).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Record {
    id: u64,
    kind: String,
    parent: String,
    labels: Labels,
    created_ns: u64,
    updated_ns: u64,
    usage: Option<Usage>,
}

/// What a snapshotter needs to find a snapshot's data: its id, kind and the ids of its
/// parents, topmost (nearest) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Names the snapshot's data (directory `snapshots/<id>`, dataset, …); never reused.
    pub id: u64,
    /// View, active or committed.
    pub kind: Kind,
    /// Ids of the parent chain, nearest first (overlay's `lowerdir` order).
    pub parent_ids: Vec<u64>,
}

/// The metadata database of one snapshotter.
#[derive(Debug)]
pub struct MetaStore {
    db: Database,
    path: PathBuf,
}

/// A read transaction: a consistent view of all records.
pub struct ReadTx<'a> {
    tx: redb::ReadTransaction,
    path: &'a Path,
}

/// A write transaction; see [`MetaStore::write`].
pub struct WriteTx<'a> {
    tx: redb::WriteTransaction,
    path: &'a Path,
}

fn db_err<E: Into<redb::Error>>(path: &Path, op: &'static str) -> impl FnOnce(E) -> Error {
    let path = path.to_path_buf();
    move |e| Error::Db {
        op,
        path,
        source: Box::new(e.into()),
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl MetaStore {
    /// Opens (creating if needed) the database at `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(db_err(path, "open"))?;
        let store = MetaStore {
            db,
            path: path.to_path_buf(),
        };
        store.write(|tx| {
            let mut meta = tx
                .tx
                .open_table(META)
                .map_err(db_err(tx.path, "open table"))?;
            let found = meta
                .get(META_SCHEMA)
                .map_err(db_err(tx.path, "read schema version"))?
                .map(|v| v.value());
            // Files from before `write_compat` existed may be written only by their version.
            let write_compat = meta
                .get(META_WRITE_COMPAT)
                .map_err(db_err(tx.path, "read schema version"))?
                .map(|v| v.value())
                .or(found);
            match found {
                Some(v)
                    if v > SCHEMA_VERSION && write_compat.is_some_and(|w| w <= SCHEMA_VERSION) =>
                {
                    tracing::info!(
                        path = %tx.path.display(),
                        "snapshot metadata: schema version {v} was written by a newer berth and \
                         may be written by this one (version {SCHEMA_VERSION}); used as it is"
                    );
                }
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(Error::SchemaTooNew {
                        path: tx.path.to_path_buf(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    })
                }
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)
                        .map_err(db_err(tx.path, "write schema version"))?;
                    meta.insert(META_WRITE_COMPAT, WRITE_COMPAT)
                        .map_err(db_err(tx.path, "write schema version"))?;
                }
            }
            drop(meta);
            tx.tx
                .open_table(SNAPSHOTS)
                .map_err(db_err(tx.path, "open table"))?;
            tx.tx
                .open_multimap_table(CHILDREN)
                .map_err(db_err(tx.path, "open table"))?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a read transaction.
    pub fn read<R>(&self, f: impl FnOnce(&ReadTx<'_>) -> Result<R>) -> Result<R> {
        let tx = self
            .db
            .begin_read()
            .map_err(db_err(&self.path, "begin read"))?;
        f(&ReadTx {
            tx,
            path: &self.path,
        })
    }

    /// Runs `f` in a write transaction and commits it when `f` returns `Ok`; on `Err` nothing
    /// `f` wrote through the transaction is kept. Write transactions are serialised, so a
    /// closure may do filesystem work that must not interleave with another writer's.
    pub fn write<R>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<R>) -> Result<R> {
        let tx = self
            .db
            .begin_write()
            .map_err(db_err(&self.path, "begin write"))?;
        let mut wtx = WriteTx {
            tx,
            path: &self.path,
        };
        let r = f(&mut wtx)?;
        wtx.tx.commit().map_err(db_err(&self.path, "commit"))?;
        Ok(r)
    }
}

fn decode(path: &Path, key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt {
        path: path.to_path_buf(),
        key: key.to_string(),
        source,
    })
}

fn encode(r: &Record) -> Vec<u8> {
    // Serialising a struct of strings, maps and integers cannot fail.
    serde_json::to_vec(r).expect("snapshot record serialises")
}

fn get_record<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    path: &Path,
    key: &str,
) -> Result<Option<Record>> {
    match t.get(key).map_err(db_err(path, "read snapshot"))? {
        Some(v) => Ok(Some(decode(path, key, v.value())?)),
        None => Ok(None),
    }
}

fn must_get<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    path: &Path,
    key: &str,
) -> Result<Record> {
    get_record(t, path, key)?.ok_or_else(|| Error::NotFound {
        key: key.to_string(),
    })
}

fn kind_of(path: &Path, key: &str, r: &Record) -> Result<Kind> {
    r.kind.parse().map_err(|_| Error::Corrupt {
        path: path.to_path_buf(),
        key: key.to_string(),
        source: serde::de::Error::custom(format!("unknown kind {:?}", r.kind)),
    })
}

fn to_info(path: &Path, key: &str, r: &Record) -> Result<Info> {
    Ok(Info {
        kind: kind_of(path, key, r)?,
        name: key.to_string(),
        parent: r.parent.clone(),
        labels: r.labels.clone(),
        created: time(r.created_ns),
        updated: time(r.updated_ns),
    })
}

fn to_snapshot<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    path: &Path,
    key: &str,
    r: &Record,
) -> Result<Snapshot> {
    let mut parent_ids = Vec::new();
    let mut parent = r.parent.clone();
    while !parent.is_empty() {
        if parent_ids.len() >= MAX_CHAIN {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                key: key.to_string(),
                source: serde::de::Error::custom(format!(
                    "parent chain longer than {MAX_CHAIN} (a loop?)"
                )),
            });
        }
        let p = get_record(t, path, &parent)?.ok_or_else(|| Error::Corrupt {
            path: path.to_path_buf(),
            key: key.to_string(),
            source: serde::de::Error::custom(format!("parent {parent:?} has no record")),
        })?;
        parent_ids.push(p.id);
        parent = p.parent;
    }
    Ok(Snapshot {
        id: r.id,
        kind: kind_of(path, key, r)?,
        parent_ids,
    })
}

fn list<T: ReadableTable<&'static str, &'static [u8]>>(
    t: &T,
    path: &Path,
    filter: &Filter,
) -> Result<Vec<Info>> {
    let mut out = Vec::new();
    for entry in t.iter().map_err(db_err(path, "list snapshots"))? {
        let (k, v) = entry.map_err(db_err(path, "list snapshots"))?;
        let info = to_info(path, k.value(), &decode(path, k.value(), v.value())?)?;
        if filter.matches(&info) {
            out.push(info);
        }
    }
    Ok(out)
}

fn ids<T: ReadableTable<&'static str, &'static [u8]>>(t: &T, path: &Path) -> Result<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for entry in t.iter().map_err(db_err(path, "list snapshots"))? {
        let (k, v) = entry.map_err(db_err(path, "list snapshots"))?;
        out.insert(decode(path, k.value(), v.value())?.id);
    }
    Ok(out)
}

impl ReadTx<'_> {
    fn table(&self) -> Result<redb::ReadOnlyTable<&'static str, &'static [u8]>> {
        self.tx
            .open_table(SNAPSHOTS)
            .map_err(db_err(self.path, "open table"))
    }

    /// The record of `key` as an [`Info`].
    pub fn info(&self, key: &str) -> Result<Info> {
        to_info(self.path, key, &must_get(&self.table()?, self.path, key)?)
    }

    /// The id, kind and parent ids of `key`.
    pub fn snapshot(&self, key: &str) -> Result<Snapshot> {
        let t = self.table()?;
        let r = must_get(&t, self.path, key)?;
        to_snapshot(&t, self.path, key, &r)
    }

    /// `key`'s snapshot and the usage recorded at commit (None unless committed).
    pub fn usage(&self, key: &str) -> Result<(Snapshot, Option<Usage>)> {
        let t = self.table()?;
        let r = must_get(&t, self.path, key)?;
        Ok((to_snapshot(&t, self.path, key, &r)?, r.usage))
    }

    /// All records matching `filter`, in key order.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Info>> {
        list(&self.table()?, self.path, filter)
    }

    /// The ids of all snapshots (to find data that has no record).
    pub fn ids(&self) -> Result<BTreeSet<u64>> {
        ids(&self.table()?, self.path)
    }
}

impl WriteTx<'_> {
    fn table(&self) -> Result<redb::Table<'_, &'static str, &'static [u8]>> {
        self.tx
            .open_table(SNAPSHOTS)
            .map_err(db_err(self.path, "open table"))
    }

    fn children(&self) -> Result<redb::MultimapTable<'_, &'static str, &'static str>> {
        self.tx
            .open_multimap_table(CHILDREN)
            .map_err(db_err(self.path, "open table"))
    }

    /// The record of `key` as an [`Info`].
    pub fn info(&self, key: &str) -> Result<Info> {
        to_info(self.path, key, &must_get(&self.table()?, self.path, key)?)
    }

    /// The id, kind and parent ids of `key`.
    pub fn snapshot(&self, key: &str) -> Result<Snapshot> {
        let t = self.table()?;
        let r = must_get(&t, self.path, key)?;
        to_snapshot(&t, self.path, key, &r)
    }

    /// The ids of all snapshots.
    pub fn ids(&self) -> Result<BTreeSet<u64>> {
        ids(&self.table()?, self.path)
    }

    /// Records a new active snapshot or view `key` on top of the committed `parent` (`""`:
    /// none) and allocates its id.
    pub fn create(
        &mut self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Snapshot> {
        if key.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "snapshot key is empty".into(),
            });
        }
        if kind == Kind::Committed {
            return Err(Error::InvalidArgument {
                reason: format!("snapshot {key:?}: committed snapshots are made by commit"),
            });
        }
        validate_labels(&labels)?;
        let path = self.path;
        let id = {
            let mut meta = self
                .tx
                .open_table(META)
                .map_err(db_err(path, "open table"))?;
            let id = meta
                .get(META_NEXT_ID)
                .map_err(db_err(path, "read id counter"))?
                .map(|v| v.value())
                .unwrap_or(1);
            meta.insert(META_NEXT_ID, id + 1)
                .map_err(db_err(path, "write id counter"))?;
            id
        };
        let mut t = self.table()?;
        if get_record(&t, path, key)?.is_some() {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        if !parent.is_empty() {
            let p = must_get(&t, path, parent)?;
            if kind_of(path, parent, &p)? != Kind::Committed {
                return Err(Error::InvalidArgument {
                    reason: format!(
                        "parent {parent:?} is a {} snapshot; only committed snapshots can be parents",
                        p.kind
                    ),
                });
            }
        }
        let now = now_ns();
        let rec = Record {
            id,
            kind: kind.as_str().to_string(),
            parent: parent.to_string(),
            labels,
            created_ns: now,
            updated_ns: now,
            usage: None,
        };
        t.insert(key, encode(&rec).as_slice())
            .map_err(db_err(path, "write snapshot"))?;
        let snap = to_snapshot(&t, path, key, &rec)?;
        drop(t);
        if !parent.is_empty() {
            self.children()?
                .insert(parent, key)
                .map_err(db_err(path, "write children"))?;
        }
        Ok(snap)
    }

    /// Turns the active `key` into the committed `name` with `usage` and `labels`; returns its
    /// id (unchanged, so the data stays where it is).
    pub fn commit(&mut self, key: &str, name: &str, usage: Usage, labels: Labels) -> Result<u64> {
        if name.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "snapshot name is empty".into(),
            });
        }
        validate_labels(&labels)?;
        let path = self.path;
        let mut t = self.table()?;
        let r = must_get(&t, path, key)?;
        let kind = kind_of(path, key, &r)?;
        if kind != Kind::Active {
            return Err(Error::FailedPrecondition {
                op: "commit",
                key: key.to_string(),
                reason: format!("it is a {kind} snapshot; only active snapshots can be committed"),
            });
        }
        if get_record(&t, path, name)?.is_some() {
            return Err(Error::AlreadyExists {
                key: name.to_string(),
            });
        }
        let now = now_ns();
        let rec = Record {
            id: r.id,
            kind: Kind::Committed.as_str().to_string(),
            parent: r.parent.clone(),
            labels,
            created_ns: now,
            updated_ns: now,
            usage: Some(usage),
        };
        t.remove(key).map_err(db_err(path, "remove snapshot"))?;
        t.insert(name, encode(&rec).as_slice())
            .map_err(db_err(path, "write snapshot"))?;
        drop(t);
        if !r.parent.is_empty() {
            let mut c = self.children()?;
            c.remove(r.parent.as_str(), key)
                .map_err(db_err(path, "write children"))?;
            c.insert(r.parent.as_str(), name)
                .map_err(db_err(path, "write children"))?;
        }
        Ok(r.id)
    }

    /// Deletes `key`'s record; refused while it has children. Returns its id and kind.
    pub fn remove(&mut self, key: &str) -> Result<(u64, Kind)> {
        let path = self.path;
        let r = must_get(&self.table()?, path, key)?;
        let kids: Vec<String> = {
            let c = self.children()?;
            let vals = c.get(key).map_err(db_err(path, "read children"))?;
            let mut out = Vec::new();
            for v in vals {
                out.push(
                    v.map_err(db_err(path, "read children"))?
                        .value()
                        .to_string(),
                );
            }
            out
        };
        if !kids.is_empty() {
            return Err(Error::FailedPrecondition {
                op: "remove",
                key: key.to_string(),
                reason: format!(
                    "it is the parent of {} snapshot(s) ({}); remove those first",
                    kids.len(),
                    kids.iter()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        self.table()?
            .remove(key)
            .map_err(db_err(path, "remove snapshot"))?;
        if !r.parent.is_empty() {
            self.children()?
                .remove(r.parent.as_str(), key)
                .map_err(db_err(path, "write children"))?;
        }
        Ok((r.id, kind_of(path, key, &r)?))
    }

    /// Applies a label update (see [`super::Snapshotter::update`]) and returns the new record.
    pub fn update(&mut self, info: &Info, fieldpaths: &[&str]) -> Result<Info> {
        let path = self.path;
        let key = info.name.as_str();
        let mut t = self.table()?;
        let mut r = must_get(&t, path, key)?;
        if fieldpaths.is_empty() {
            r.labels = info.labels.clone();
        } else {
            for fp in fieldpaths {
                if *fp == "labels" {
                    r.labels = info.labels.clone();
                } else if let Some(k) = fp.strip_prefix("labels.") {
                    match info.labels.get(k) {
                        Some(v) => {
                            r.labels.insert(k.to_string(), v.clone());
                        }
                        None => {
                            r.labels.remove(k);
                        }
                    }
                } else {
                    return Err(Error::InvalidArgument {
                        reason: format!(
                            "snapshot {key:?}: field {fp:?} cannot be updated (only labels and labels.<key> are mutable)"
                        ),
                    });
                }
            }
        }
        validate_labels(&r.labels)?;
        r.updated_ns = now_ns().max(r.created_ns);
        t.insert(key, encode(&r).as_slice())
            .map_err(db_err(path, "write snapshot"))?;
        to_info(path, key, &r)
    }

    /// All records matching `filter`.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Info>> {
        list(&self.table()?, self.path, filter)
    }

    /// Number of records (for tests and consistency checks).
    pub fn len(&self) -> Result<u64> {
        self.table()?
            .len()
            .map_err(db_err(self.path, "count snapshots"))
    }

    /// True when there are no records.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Overwrites the schema version (for tests of the newer-schema refusal).
    #[doc(hidden)]
    pub fn set_schema_version(&mut self, v: u64) -> Result<()> {
        let mut meta = self
            .tx
            .open_table(META)
            .map_err(db_err(self.path, "open table"))?;
        meta.insert(META_SCHEMA, v)
            .map_err(db_err(self.path, "write schema version"))?;
        Ok(())
    }

    /// Overwrites the oldest version allowed to write the file (for tests, as above).
    #[doc(hidden)]
    pub fn set_write_compat(&mut self, v: u64) -> Result<()> {
        let mut meta = self
            .tx
            .open_table(META)
            .map_err(db_err(self.path, "open table"))?;
        meta.insert(META_WRITE_COMPAT, v)
            .map_err(db_err(self.path, "write schema version"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::errdefs::{Classify, Kind as ErrKind};

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn open() -> (tempfile::TempDir, MetaStore) {
        let d = tempfile::tempdir().unwrap();
        let m = MetaStore::open(&d.path().join(FILE_NAME)).unwrap();
        (d, m)
    }

    #[test]
    fn chain_ids_topmost_first_and_kinds() {
        let (_d, m) = open();
        let a = m
            .write(|tx| tx.create(Kind::Active, "a", "", Labels::new()))
            .unwrap();
        assert!(a.parent_ids.is_empty());
        m.write(|tx| tx.commit("a", "A", Usage { size: 1, inodes: 2 }, Labels::new()))
            .unwrap();
        let b = m
            .write(|tx| tx.create(Kind::Active, "b", "A", Labels::new()))
            .unwrap();
        m.write(|tx| tx.commit("b", "B", Usage::default(), Labels::new()))
            .unwrap();
        let v = m
            .write(|tx| tx.create(Kind::View, "v", "B", Labels::new()))
            .unwrap();
        assert_eq!(v.parent_ids, vec![b.id, a.id]);
        assert_eq!(v.kind, Kind::View);
        let (s, u) = m.read(|tx| tx.usage("A")).unwrap();
        assert_eq!(
            (s.kind, u),
            (Kind::Committed, Some(Usage { size: 1, inodes: 2 }))
        );
        assert!(m.read(|tx| tx.info("a")).unwrap_err().is_not_found());
        assert_eq!(m.read(|tx| tx.info("B")).unwrap().parent, "A");
    }

    #[test]
    fn errors_have_containerd_classes() {
        let (_d, m) = open();
        m.write(|tx| tx.create(Kind::Active, "a", "", Labels::new()))
            .unwrap();
        let e = m
            .write(|tx| tx.create(Kind::View, "a", "", Labels::new()))
            .unwrap_err();
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
        let e = m
            .write(|tx| tx.create(Kind::Active, "x", "nope", Labels::new()))
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let e = m
            .write(|tx| tx.create(Kind::Active, "x", "a", Labels::new()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrKind::InvalidArgument, "{e}");
        let e = m
            .write(|tx| tx.create(Kind::Active, "", "", Labels::new()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrKind::InvalidArgument, "{e}");
        m.write(|tx| tx.create(Kind::View, "v", "", Labels::new()))
            .unwrap();
        let e = m
            .write(|tx| tx.commit("v", "V", Usage::default(), Labels::new()))
            .unwrap_err();
        assert_eq!(e.kind(), ErrKind::FailedPrecondition, "{e}");
        let e = m
            .write(|tx| tx.commit("a", "v", Usage::default(), Labels::new()))
            .unwrap_err();
        assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
        let big = labels(&[("k", &"x".repeat(MAX_LABEL))]);
        let e = m
            .write(|tx| tx.create(Kind::Active, "big", "", big))
            .unwrap_err();
        assert_eq!(e.kind(), ErrKind::InvalidArgument, "{e}");
    }
    const MAX_LABEL: usize = super::super::MAX_LABEL_SIZE;

    #[test]
    fn remove_refused_with_children_then_allowed() {
        let (_d, m) = open();
        m.write(|tx| tx.create(Kind::Active, "a", "", Labels::new()))
            .unwrap();
        m.write(|tx| tx.commit("a", "A", Usage::default(), Labels::new()))
            .unwrap();
        m.write(|tx| tx.create(Kind::Active, "c", "A", Labels::new()))
            .unwrap();
        let e = m.write(|tx| tx.remove("A")).unwrap_err();
        assert_eq!(e.kind(), ErrKind::FailedPrecondition);
        assert!(
            e.to_string().contains("remove") && e.to_string().contains("\"c\""),
            "{e}"
        );
        // Committing the child moves the children entry from the key to the name.
        m.write(|tx| tx.commit("c", "C", Usage::default(), Labels::new()))
            .unwrap();
        let e = m.write(|tx| tx.remove("A")).unwrap_err();
        assert!(e.to_string().contains("\"C\""), "{e}");
        m.write(|tx| tx.remove("C")).unwrap();
        m.write(|tx| tx.remove("A")).unwrap();
        assert!(m.write(|tx| tx.is_empty()).unwrap());
    }

    #[test]
    fn failed_closure_leaves_nothing() {
        let (_d, m) = open();
        let e = m
            .write(|tx| {
                tx.create(Kind::Active, "a", "", Labels::new())?;
                Err::<(), _>(Error::InvalidArgument {
                    reason: "boom".into(),
                })
            })
            .unwrap_err();
        assert!(e.to_string().contains("boom"));
        assert!(m.read(|tx| tx.info("a")).unwrap_err().is_not_found());
        assert!(m.read(|tx| tx.ids()).unwrap().is_empty());
    }

    #[test]
    fn ids_are_never_reused_after_commit() {
        let (_d, m) = open();
        let a = m
            .write(|tx| tx.create(Kind::Active, "a", "", Labels::new()))
            .unwrap();
        m.write(|tx| tx.remove("a")).unwrap();
        let b = m
            .write(|tx| tx.create(Kind::Active, "a", "", Labels::new()))
            .unwrap();
        assert!(b.id > a.id);
    }

    #[test]
    fn update_field_paths() {
        let (_d, m) = open();
        m.write(|tx| tx.create(Kind::Active, "a", "", labels(&[("x", "1"), ("y", "2")])))
            .unwrap();
        let mut info = m.read(|tx| tx.info("a")).unwrap();
        assert_eq!(info.created, info.updated);
        info.labels = labels(&[("x", "9"), ("z", "3")]);
        let got = m
            .write(|tx| tx.update(&info, &["labels.x", "labels.y"]))
            .unwrap();
        assert_eq!(got.labels, labels(&[("x", "9")]));
        assert!(got.updated >= got.created);
        let got = m.write(|tx| tx.update(&info, &[])).unwrap();
        assert_eq!(got.labels, info.labels);
        let e = m.write(|tx| tx.update(&info, &["parent"])).unwrap_err();
        assert_eq!(e.kind(), ErrKind::InvalidArgument);
        info.name = "missing".into();
        assert!(m
            .write(|tx| tx.update(&info, &[]))
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn persists_and_refuses_newer_schema() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(FILE_NAME);
        {
            let m = MetaStore::open(&p).unwrap();
            m.write(|tx| tx.create(Kind::Active, "a", "", Labels::new()))
                .unwrap();
        }
        {
            let m = MetaStore::open(&p).unwrap();
            assert_eq!(m.read(|tx| tx.info("a")).unwrap().kind, Kind::Active);
            m.write(|tx| tx.set_schema_version(SCHEMA_VERSION + 1))
                .unwrap();
        }
        // write_compat 1 (written at creation): a newer version that kept compatibility.
        let m = MetaStore::open(&p).unwrap();
        assert_eq!(m.read(|tx| tx.info("a")).unwrap().kind, Kind::Active);
        m.write(|tx| tx.create(Kind::Active, "b", "", Labels::new()))
            .unwrap();
        m.write(|tx| tx.set_write_compat(SCHEMA_VERSION + 1))
            .unwrap();
        drop(m);
        let e = MetaStore::open(&p).unwrap_err();
        assert!(matches!(e, Error::SchemaTooNew { found: 2, .. }), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
    }
}
