//! Leases: named, optionally expiring holds on content, ingests and snapshots.

use std::time::SystemTime;

use redb::ReadableTable;

use super::schema::{self, get2, list2};
use super::{encode, ensure_namespace, validate, Db, Error, Labels, Lease, LeaseResource, Result};

/// Lease operations (see [`Db::leases`]).
#[derive(Debug, Clone, Copy)]
pub struct Leases<'a> {
    pub(crate) db: &'a Db,
}

fn what(ns: &str, id: &str) -> String {
    format!("lease {id:?} in namespace {ns:?}")
}

/// Resources of lease `id`, read inside any transaction.
pub(crate) fn resources_of(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str, &'static str), ()>,
    ns: &str,
    id: &str,
) -> Result<Vec<LeaseResource>> {
    let mut out = Vec::new();
    for item in t.range((ns, id, "", "")..)? {
        let (k, _) = item?;
        let (kns, kid, kind, rid) = k.value();
        if kns != ns || kid != id {
            break;
        }
        // Only this module writes the table, so an undecodable row is corruption; it is
        // skipped rather than failing every lease operation, and logged.
        match LeaseResource::decode(kind, rid) {
            Ok(r) => out.push(r),
            Err(e) => {
                tracing::warn!(namespace = %ns, lease = %id, error = %e, "metadata: skipping an unreadable lease resource")
            }
        }
    }
    Ok(out)
}

impl Leases<'_> {
    /// Creates a lease; [`Error::AlreadyExists`] if the id is taken.
    pub fn create(
        &self,
        ns: &str,
        id: &str,
        labels: Labels,
        expires_at: Option<SystemTime>,
    ) -> Result<Lease> {
        validate::identifier("lease", id)?;
        validate::labels(&labels)?;
        self.db.write("create lease", |txn| {
            ensure_namespace(txn, ns)?;
            let mut t = txn.open_table(schema::LEASES)?;
            if t.get((ns, id))?.is_some() {
                return Err(Error::exists(what(ns, id)));
            }
            let lease = Lease {
                id: id.to_owned(),
                labels,
                created_at: SystemTime::now(),
                expires_at,
            };
            t.insert((ns, id), encode(&lease).as_slice())?;
            Ok(lease)
        })
    }

    /// One lease.
    pub fn get(&self, ns: &str, id: &str) -> Result<Lease> {
        self.db.read("get lease", |txn| {
            get2(&txn.open_table(schema::LEASES)?, "leases", ns, id)?
                .ok_or_else(|| Error::not_found(what(ns, id)))
        })
    }

    /// All leases of a namespace, by id.
    pub fn list(&self, ns: &str) -> Result<Vec<Lease>> {
        self.db.read("list leases", |txn| {
            list2(&txn.open_table(schema::LEASES)?, "leases", ns)
        })
    }

    /// Deletes a lease and its resource list (what it held goes at the next collection).
    pub fn delete(&self, ns: &str, id: &str) -> Result<()> {
        self.db.write("delete lease", |txn| {
            let mut t = txn.open_table(schema::LEASES)?;
            if t.remove((ns, id))?.is_none() {
                return Err(Error::not_found(what(ns, id)));
            }
            delete_resources(txn, ns, id)
        })
    }

    /// Attaches a resource to a lease (idempotent).
    pub fn add_resource(&self, ns: &str, id: &str, r: &LeaseResource) -> Result<()> {
        check_resource(r)?;
        let (kind, rid) = r.encode();
        self.db.write("add lease resource", |txn| {
            if txn.open_table(schema::LEASES)?.get((ns, id))?.is_none() {
                return Err(Error::not_found(what(ns, id)));
            }
            txn.open_table(schema::LEASE_RESOURCES)?
                .insert((ns, id, kind.as_str(), rid.as_str()), ())?;
            Ok(())
        })
    }

    /// Detaches a resource from a lease; [`Error::NotFound`] if it was not attached.
    pub fn delete_resource(&self, ns: &str, id: &str, r: &LeaseResource) -> Result<()> {
        let (kind, rid) = r.encode();
        self.db.write("delete lease resource", |txn| {
            if txn.open_table(schema::LEASES)?.get((ns, id))?.is_none() {
                return Err(Error::not_found(what(ns, id)));
            }
            let mut t = txn.open_table(schema::LEASE_RESOURCES)?;
            let found = t.remove((ns, id, kind.as_str(), rid.as_str()))?.is_some();
            if found {
                Ok(())
            } else {
                Err(Error::not_found(format!(
                    "resource {kind}/{rid} of {}",
                    what(ns, id)
                )))
            }
        })
    }

    /// The resources attached to a lease.
    pub fn resources(&self, ns: &str, id: &str) -> Result<Vec<LeaseResource>> {
        self.db.read("list lease resources", |txn| {
            if txn.open_table(schema::LEASES)?.get((ns, id))?.is_none() {
                return Err(Error::not_found(what(ns, id)));
            }
            resources_of(&txn.open_table(schema::LEASE_RESOURCES)?, ns, id)
        })
    }
}

fn check_resource(r: &LeaseResource) -> Result<()> {
    match r {
        LeaseResource::Content(_) => Ok(()),
        LeaseResource::Ingest(reference) => validate::name("ingest ref", reference),
        LeaseResource::Snapshot { snapshotter, key } => {
            validate::identifier("snapshotter", snapshotter)?;
            validate::name("snapshot key", key)
        }
    }
}

/// Removes every resource row of lease `id`.
pub(crate) fn delete_resources(txn: &redb::WriteTransaction, ns: &str, id: &str) -> Result<()> {
    let mut t = txn.open_table(schema::LEASE_RESOURCES)?;
    let keys: Vec<(String, String)> = resources_of(&t, ns, id)?
        .iter()
        .map(LeaseResource::encode)
        .collect();
    for (kind, rid) in keys {
        t.remove((ns, id, kind.as_str(), rid.as_str()))?;
    }
    Ok(())
}
