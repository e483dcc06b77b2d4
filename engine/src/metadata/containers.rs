//! Containers: the metadata a container is created from (the task manager runs them).

use std::time::SystemTime;

use redb::ReadableTable;

use super::schema::{self, get2, list2};
use super::{
    apply_label_paths, bad_field, encode, ensure_namespace, validate, Container, Db, Error, Result,
    SnapshotRecord,
};

/// Container operations (see [`Db::containers`]).
#[derive(Debug, Clone, Copy)]
pub struct Containers<'a> {
    pub(crate) db: &'a Db,
}

fn what(ns: &str, id: &str) -> String {
    format!("container {id:?} in namespace {ns:?}")
}

fn check(c: &Container) -> Result<()> {
    validate::identifier("container", &c.id)?;
    validate::labels(&c.labels)?;
    if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container {:?}: a snapshot key needs a snapshotter",
            c.id
        )));
    }
    Ok(())
}

impl Containers<'_> {
    /// Stores a new container; [`Error::AlreadyExists`] if the id is taken.
    pub fn create(&self, ns: &str, c: Container) -> Result<Container> {
        check(&c)?;
        self.db
            .write("create container", |txn| insert_new(txn, ns, c))
    }

    /// Stores a new container and the record of its rootfs snapshot (which the backend made)
    /// in one transaction: one commit, one fsync, on every create.
    pub fn create_with_snapshot(
        &self,
        ns: &str,
        snapshot: SnapshotRecord,
        c: Container,
    ) -> Result<Container> {
        check(&c)?;
        super::snapshots::check(&snapshot)?;
        self.db.write("create container", |txn| {
            super::snapshots::insert_new(txn, ns, snapshot)?;
            insert_new(txn, ns, c)
        })
    }

    /// One container.
    pub fn get(&self, ns: &str, id: &str) -> Result<Container> {
        self.db.read("get container", |txn| {
            get2(&txn.open_table(schema::CONTAINERS)?, "containers", ns, id)?
                .ok_or_else(|| Error::not_found(what(ns, id)))
        })
    }

    /// All containers of a namespace, by id.
    pub fn list(&self, ns: &str) -> Result<Vec<Container>> {
        self.db.read("list containers", |txn| {
            list2(&txn.open_table(schema::CONTAINERS)?, "containers", ns)
        })
    }

    /// Updates a container: field paths `labels`, `labels.<key>`, `image`, `snapshotter`,
    /// `snapshot_key`, `runtime`, `spec` (none = all of them).
    pub fn update(&self, ns: &str, c: Container, paths: &[String]) -> Result<Container> {
        check(&c)?;
        self.db.write("update container", |txn| {
            let mut t = txn.open_table(schema::CONTAINERS)?;
            let mut rec: Container = get2(&t, "containers", ns, &c.id)?
                .ok_or_else(|| Error::not_found(what(ns, &c.id)))?;
            let mut rest = apply_label_paths(&mut rec.labels, &c.labels, paths);
            if paths.is_empty() {
                rest = vec!["image", "snapshotter", "snapshot_key", "runtime", "spec"];
            }
            for f in rest {
                match f {
                    "image" => rec.image.clone_from(&c.image),
                    "snapshotter" => rec.snapshotter.clone_from(&c.snapshotter),
                    "snapshot_key" => rec.snapshot_key.clone_from(&c.snapshot_key),
                    "runtime" => rec.runtime.clone_from(&c.runtime),
                    "spec" => rec.spec.clone_from(&c.spec),
                    other => {
                        return Err(bad_field(
                            "a container",
                            other,
                            "labels, labels.<key>, image, snapshotter, snapshot_key, runtime, spec",
                        ))
                    }
                }
            }
            rec.updated_at = SystemTime::now();
            t.insert((ns, c.id.as_str()), encode(&rec).as_slice())?;
            Ok(rec)
        })
    }

    /// Deletes a container record.
    pub fn delete(&self, ns: &str, id: &str) -> Result<()> {
        self.db
            .write("delete container", |txn| remove(txn, ns, id).map(drop))
    }

    /// Deletes a container record and the record of its rootfs snapshot in one transaction
    /// (records go before the backend's data). Returns the container and the snapshot
    /// record removed; a snapshot record that is missing or has children stays as it is
    /// and is not returned.
    pub fn delete_with_snapshot(
        &self,
        ns: &str,
        id: &str,
    ) -> Result<(Container, Option<SnapshotRecord>)> {
        self.db.write("delete container", |txn| {
            let c = remove(txn, ns, id)?;
            if c.snapshot_key.is_empty() {
                return Ok((c, None));
            }
            match super::snapshots::remove(txn, ns, &c.snapshotter, &c.snapshot_key) {
                Ok(r) => Ok((c, Some(r))),
                Err(Error::NotFound { .. } | Error::FailedPrecondition(_)) => Ok((c, None)),
                Err(e) => Err(e),
            }
        })
    }
}

/// [`Containers::create`] inside `txn` (after [`check`]).
fn insert_new(txn: &redb::WriteTransaction, ns: &str, mut c: Container) -> Result<Container> {
    ensure_namespace(txn, ns)?;
    let mut t = txn.open_table(schema::CONTAINERS)?;
    if t.get((ns, c.id.as_str()))?.is_some() {
        return Err(Error::exists(what(ns, &c.id)));
    }
    let now = SystemTime::now();
    c.created_at = now;
    c.updated_at = now;
    t.insert((ns, c.id.as_str()), encode(&c).as_slice())?;
    Ok(c)
}

/// [`Containers::delete`] inside `txn`; returns the record removed.
fn remove(txn: &redb::WriteTransaction, ns: &str, id: &str) -> Result<Container> {
    let mut t = txn.open_table(schema::CONTAINERS)?;
    let removed = t.remove((ns, id))?;
    match removed {
        Some(v) => super::decode("containers", || what(ns, id), v.value()),
        None => Err(Error::not_found(what(ns, id))),
    }
}
