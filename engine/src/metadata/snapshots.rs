//! Snapshot records: what each namespace knows of the snapshots in each snapshotter. The
//! snapshots themselves belong to the snapshotter backends; these records name them.

use std::time::SystemTime;

use redb::ReadableTable;

use super::schema;
use super::{
    apply_label_paths, bad_field, decode, encode, ensure_namespace, validate, Db, Error, Labels,
    Result, SnapshotRecord,
};

/// Snapshot record operations (see [`Db::snapshots`]).
#[derive(Debug, Clone, Copy)]
pub struct Snapshots<'a> {
    pub(crate) db: &'a Db,
}

fn what(ns: &str, snapshotter: &str, key: &str) -> String {
    format!("snapshot {key:?} of snapshotter {snapshotter:?} in namespace {ns:?}")
}

type SnapTable<'t> = redb::Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>;

fn get3(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    ns: &str,
    sn: &str,
    key: &str,
) -> Result<Option<SnapshotRecord>> {
    match t.get((ns, sn, key))? {
        Some(v) => Ok(Some(decode(
            "snapshots",
            || format!("{ns}/{sn}/{key}"),
            v.value(),
        )?)),
        None => Ok(None),
    }
}

/// Records of (`ns`, `sn`), or of every snapshotter of `ns` when `sn` is `None`.
fn list3(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    ns: &str,
    sn: Option<&str>,
) -> Result<Vec<SnapshotRecord>> {
    let mut out = Vec::new();
    for item in t.range((ns, sn.unwrap_or(""), "")..)? {
        let (k, v) = item?;
        let (kns, ksn, key) = k.value();
        if kns != ns || sn.is_some_and(|s| s != ksn) {
            break;
        }
        out.push(decode(
            "snapshots",
            || format!("{kns}/{ksn}/{key}"),
            v.value(),
        )?);
    }
    Ok(out)
}

impl SnapshotRecord {
    /// A new record; timestamps are set when it is stored.
    pub fn new(
        snapshotter: impl Into<String>,
        key: impl Into<String>,
        backend_key: impl Into<String>,
        parent: Option<String>,
        labels: Labels,
    ) -> Self {
        let now = SystemTime::now();
        Self {
            snapshotter: snapshotter.into(),
            key: key.into(),
            backend_key: backend_key.into(),
            parent,
            labels,
            created_at: now,
            updated_at: now,
        }
    }
}

impl Snapshots<'_> {
    /// Stores a new record (after the backend created the snapshot). The parent, when given,
    /// must be recorded in the same namespace and snapshotter.
    pub fn create(&self, ns: &str, rec: SnapshotRecord) -> Result<SnapshotRecord> {
        check(&rec)?;
        self.db
            .write("create snapshot record", |txn| insert_new(txn, ns, rec))
    }

    /// One record.
    pub fn get(&self, ns: &str, snapshotter: &str, key: &str) -> Result<SnapshotRecord> {
        self.db.read("get snapshot record", |txn| {
            get3(&txn.open_table(schema::SNAPSHOTS)?, ns, snapshotter, key)?
                .ok_or_else(|| Error::not_found(what(ns, snapshotter, key)))
        })
    }

    /// Records of one snapshotter (or all) in a namespace, by snapshotter then key.
    pub fn list(&self, ns: &str, snapshotter: Option<&str>) -> Result<Vec<SnapshotRecord>> {
        self.db.read("list snapshot records", |txn| {
            list3(&txn.open_table(schema::SNAPSHOTS)?, ns, snapshotter)
        })
    }

    /// Updates labels with containerd's field paths (`labels`, `labels.<key>`; none = all).
    pub fn update(
        &self,
        ns: &str,
        snapshotter: &str,
        key: &str,
        labels: Labels,
        paths: &[String],
    ) -> Result<SnapshotRecord> {
        validate::labels(&labels)?;
        self.db.write("update snapshot record", |txn| {
            let mut t: SnapTable = txn.open_table(schema::SNAPSHOTS)?;
            let mut rec = get3(&t, ns, snapshotter, key)?
                .ok_or_else(|| Error::not_found(what(ns, snapshotter, key)))?;
            if let Some(f) = apply_label_paths(&mut rec.labels, &labels, paths).first() {
                return Err(bad_field("a snapshot", f, "labels and labels.<key>"));
            }
            rec.updated_at = SystemTime::now();
            t.insert((ns, snapshotter, key), encode(&rec).as_slice())?;
            Ok(rec)
        })
    }

    /// Removes a record (before the backend removes the snapshot: record first). Refused with
    /// [`Error::FailedPrecondition`] while another record names it as parent.
    pub fn delete(&self, ns: &str, snapshotter: &str, key: &str) -> Result<SnapshotRecord> {
        self.db.write("delete snapshot record", |txn| {
            remove(txn, ns, snapshotter, key)
        })
    }
}

/// Validates a new record before any transaction starts.
pub(crate) fn check(rec: &SnapshotRecord) -> Result<()> {
    validate::identifier("snapshotter", &rec.snapshotter)?;
    validate::name("snapshot key", &rec.key)?;
    validate::name("snapshot backend key", &rec.backend_key)?;
    validate::labels(&rec.labels)
}

/// [`Snapshots::create`] inside `txn` (after [`check`]).
pub(crate) fn insert_new(
    txn: &redb::WriteTransaction,
    ns: &str,
    mut rec: SnapshotRecord,
) -> Result<SnapshotRecord> {
    ensure_namespace(txn, ns)?;
    let mut t: SnapTable = txn.open_table(schema::SNAPSHOTS)?;
    let (sn, key) = (rec.snapshotter.clone(), rec.key.clone());
    if t.get((ns, sn.as_str(), key.as_str()))?.is_some() {
        return Err(Error::exists(what(ns, &sn, &key)));
    }
    if let Some(p) = &rec.parent {
        if get3(&t, ns, &sn, p)?.is_none() {
            return Err(Error::not_found(format!("parent {}", what(ns, &sn, p))));
        }
    }
    let now = SystemTime::now();
    rec.created_at = now;
    rec.updated_at = now;
    t.insert((ns, sn.as_str(), key.as_str()), encode(&rec).as_slice())?;
    Ok(rec)
}

/// [`Snapshots::delete`] inside `txn`.
pub(crate) fn remove(
    txn: &redb::WriteTransaction,
    ns: &str,
    snapshotter: &str,
    key: &str,
) -> Result<SnapshotRecord> {
    let mut t: SnapTable = txn.open_table(schema::SNAPSHOTS)?;
    let rec = get3(&t, ns, snapshotter, key)?
        .ok_or_else(|| Error::not_found(what(ns, snapshotter, key)))?;
    let children: Vec<String> = list3(&t, ns, Some(snapshotter))?
        .into_iter()
        .filter(|r| r.parent.as_deref() == Some(key))
        .map(|r| r.key)
        .collect();
    if !children.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "{} has children {children:?}; remove them first",
            what(ns, snapshotter, key)
        )));
    }
    t.remove((ns, snapshotter, key))?;
    Ok(rec)
}
