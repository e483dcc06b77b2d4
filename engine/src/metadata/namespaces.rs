//! Namespaces: created explicitly or by the first object created in them; deleted only when
//! empty.

use std::time::SystemTime;

use redb::ReadableTable;

use super::schema::{self, has_prefix2};
use super::{
    apply_label_paths, bad_field, decode, encode, validate, Db, Error, Labels, Namespace, Result,
};

/// Namespace operations (see [`Db::namespaces`]).
#[derive(Debug, Clone, Copy)]
pub struct Namespaces<'a> {
    pub(crate) db: &'a Db,
}

impl Namespaces<'_> {
    /// Creates a namespace; [`Error::AlreadyExists`] if it exists.
    pub fn create(&self, name: &str, labels: Labels) -> Result<Namespace> {
        validate::identifier("namespace", name)?;
        validate::labels(&labels)?;
        self.db.write("create namespace", |txn| {
            let mut t = txn.open_table(schema::NAMESPACES)?;
            if t.get(name)?.is_some() {
                return Err(Error::exists(format!("namespace {name:?}")));
            }
            let now = SystemTime::now();
            let rec = Namespace {
                name: name.to_owned(),
                labels,
                created_at: now,
                updated_at: now,
            };
            t.insert(name, encode(&rec).as_slice())?;
            Ok(rec)
        })
    }

    /// One namespace.
    pub fn get(&self, name: &str) -> Result<Namespace> {
        self.db.read("get namespace", |txn| {
            let t = txn.open_table(schema::NAMESPACES)?;
            let v = t
                .get(name)?
                .ok_or_else(|| Error::not_found(format!("namespace {name:?}")))?;
            decode("namespaces", || name.to_owned(), v.value())
        })
    }

    /// All namespaces, by name.
    pub fn list(&self) -> Result<Vec<Namespace>> {
        self.db.read("list namespaces", |txn| {
            let t = txn.open_table(schema::NAMESPACES)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                out.push(decode("namespaces", || k.value().to_owned(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Updates labels with containerd's field paths (`labels`, `labels.<key>`; none = all).
    pub fn update(&self, name: &str, labels: Labels, paths: &[String]) -> Result<Namespace> {
        validate::labels(&labels)?;
        self.db.write("update namespace", |txn| {
            let mut t = txn.open_table(schema::NAMESPACES)?;
            let mut rec: Namespace = match t.get(name)? {
                Some(v) => decode("namespaces", || name.to_owned(), v.value())?,
                None => return Err(Error::not_found(format!("namespace {name:?}"))),
            };
            if let Some(f) = apply_label_paths(&mut rec.labels, &labels, paths).first() {
                return Err(bad_field("a namespace", f, "labels and labels.<key>"));
            }
            rec.updated_at = SystemTime::now();
            t.insert(name, encode(&rec).as_slice())?;
            Ok(rec)
        })
    }

    /// Deletes an empty namespace. [`Error::FailedPrecondition`] names what it still holds.
    pub fn delete(&self, name: &str) -> Result<()> {
        self.db.write("delete namespace", |txn| {
            let mut t = txn.open_table(schema::NAMESPACES)?;
            if t.get(name)?.is_none() {
                return Err(Error::not_found(format!("namespace {name:?}")));
            }
            let mut held = Vec::new();
            for (what, table) in [
                ("images", schema::IMAGES),
                ("content", schema::CONTENT),
                ("containers", schema::CONTAINERS),
                ("leases", schema::LEASES),
            ] {
                if has_prefix2(&txn.open_table(table)?, name)? {
                    held.push(what);
                }
            }
            let snaps = txn.open_table(schema::SNAPSHOTS)?;
            if let Some(item) = snaps.range((name, "", "")..)?.next() {
                if item?.0.value().0 == name {
                    held.push("snapshots");
                }
            }
            if !held.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "namespace {name:?} must be empty to be deleted, but it still holds {}",
                    held.join(", ")
                )));
            }
            t.remove(name)?;
            Ok(())
        })
    }
}
