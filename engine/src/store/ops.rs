//! Operations of the store that need more than one table call: a content write's commit
//! (blob, record, lease — in that order, under the resource guard), reads that check the
//! namespace's record before the blob, image updates that keep the stored target, and deletes
//! that trigger (or run) a collection.
//!
//! Content reads check the namespace's record first, so a blob another namespace wrote is
//! invisible. A committed write publishes the blob, then records it in the namespace (blob
//! first, then record), both under the database's resource guard so a concurrent collection
//! cannot take the blob in between; a write naming a lease attaches the blob to it, so it
//! survives collection until the lease goes.

use berth_api::errdefs::{Classify, Kind};

use super::Store;
use crate::content::{Digest, Ingester, Provider, Writer};
use crate::metadata::{self, Descriptor, Image, LeaseResource};

/// An error of a store operation: the metadata database's or the content store's, each
/// keeping its own message and class.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Metadata(#[from] metadata::Error),
    #[error(transparent)]
    Content(#[from] crate::content::Error),
}

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::Metadata(e) => e.kind(),
            Error::Content(e) => e.kind(),
        }
    }
}

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The fields of an image an update may change; `target: None` keeps the stored target
/// (a labels-only update need not repeat it).
#[derive(Debug, Clone)]
pub struct ImageUpdate {
    pub name: String,
    pub target: Option<Descriptor>,
    pub labels: metadata::Labels,
}

impl Store {
    /// A reader of blob `d`, if namespace `ns` has a record of it.
    pub fn reader(&self, ns: &str, d: &Digest) -> Result<crate::content::ReaderAt> {
        self.db.content().get(ns, d)?;
        Ok(self.content.reader_at(d)?)
    }

    /// Opens (or resumes) the ingest `reference`, with the digest and size it must reach
    /// when known.
    pub fn writer(&self, reference: &str, expected: Option<(Digest, u64)>) -> Result<Writer> {
        Ok(self.content.writer(reference, expected)?)
    }

    /// Commits the ingest `w` as blob `expected` of `size` bytes and records it in `ns` with
    /// `labels` (and on `lease`), under the resource guard. A blob that was present already
    /// is recorded as well; only when both blob and record existed is it ALREADY_EXISTS.
    pub fn commit(
        &self,
        ns: &str,
        lease: Option<&str>,
        w: Writer,
        size: u64,
        expected: Digest,
        labels: metadata::Labels,
    ) -> Result<Digest> {
        let db = &self.db;
        let _guard = db.resource_guard();
        let blob_existed = match w.commit(size, expected) {
            Ok(_) => false,
            Err(crate::content::Error::AlreadyExists { .. }) => true,
            Err(e) => return Err(e.into()),
        };
        let (_, created) = db.content().put_record(ns, expected, size, labels)?;
        if let Some(l) = lease {
            db.leases()
                .add_resource(ns, l, &LeaseResource::Content(expected))?;
        }
        if blob_existed && !created {
            return Err(metadata::Error::AlreadyExists {
                what: format!("content {expected} in namespace {ns:?}"),
            }
            .into());
        }
        Ok(expected)
    }

    /// Removes `ns`'s record of blob `d`; the collector takes the blob when no namespace
    /// records it any more.
    pub fn delete_content(&self, ns: &str, d: &Digest) -> metadata::Result<()> {
        self.db.content().delete(ns, d)?;
        self.gc.request();
        Ok(())
    }

    /// Updates image `update.name` in `ns` (the fields `mask` names; all when empty).
    pub fn update_image(
        &self,
        ns: &str,
        update: ImageUpdate,
        mask: &[String],
    ) -> metadata::Result<Image> {
        let target = match update.target {
            Some(t) => t,
            // The database ignores the target unless the mask names it; the stored one
            // stands in.
            None => self.db.images().get(ns, &update.name)?.target,
        };
        let image = Image::new(update.name, target, update.labels);
        self.db.images().update(ns, image, mask)
    }

    /// Deletes image `name` of `ns`, then collects now (`sync`) or soon.
    pub fn delete_image(&self, ns: &str, name: &str, sync: bool) -> metadata::Result<()> {
        self.db.images().delete(ns, name)?;
        self.collect_after_delete(sync)
    }

    /// Deletes lease `id` of `ns`, then collects now (`sync`) or soon.
    pub fn delete_lease(&self, ns: &str, id: &str, sync: bool) -> metadata::Result<()> {
        self.db.leases().delete(ns, id)?;
        self.collect_after_delete(sync)
    }

    /// Takes `r` off lease `id`; the collector may then take it.
    pub fn delete_lease_resource(
        &self,
        ns: &str,
        id: &str,
        r: &LeaseResource,
    ) -> metadata::Result<()> {
        self.db.leases().delete_resource(ns, id, r)?;
        self.gc.request();
        Ok(())
    }

    fn collect_after_delete(&self, sync: bool) -> metadata::Result<()> {
        if sync {
            self.collect()?;
        } else {
            self.gc.request();
        }
        Ok(())
    }
}
