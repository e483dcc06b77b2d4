//! Content records: which blobs of the shared content store each namespace can see.

use std::time::SystemTime;

use super::schema::{self, get2, list2};
use super::{
    apply_label_paths, bad_field, encode, ensure_namespace, validate, ContentRecord, Db, Error,
    Labels, Result,
};
use crate::content::Digest;

/// Content record operations (see [`Db::content`]).
#[derive(Debug, Clone, Copy)]
pub struct ContentRecords<'a> {
    pub(crate) db: &'a Db,
}

fn what(ns: &str, digest: &Digest) -> String {
    format!("content {digest} in namespace {ns:?}")
}

impl ContentRecords<'_> {
    /// Records that `ns` holds the blob `digest` (which must already be in the content store:
    /// blob first, then record). An existing record keeps its creation time and gains the
    /// given labels. Returns the record and whether it was new.
    pub fn put_record(
        &self,
        ns: &str,
        digest: Digest,
        size: u64,
        labels: Labels,
    ) -> Result<(ContentRecord, bool)> {
        validate::labels(&labels)?;
        let key = digest.to_string();
        self.db.write("put content record", |txn| {
            ensure_namespace(txn, ns)?;
            let mut t = txn.open_table(schema::CONTENT)?;
            let now = SystemTime::now();
            let (rec, created) = match get2::<ContentRecord>(&t, "content", ns, &key)? {
                Some(mut rec) => {
                    if rec.size != size {
                        return Err(Error::InvalidArgument(format!(
                            "{}: size {size} differs from the recorded {}",
                            what(ns, &digest),
                            rec.size
                        )));
                    }
                    rec.labels.extend(labels);
                    rec.updated_at = now;
                    (rec, false)
                }
                None => (
                    ContentRecord {
                        digest,
                        size,
                        labels,
                        created_at: now,
                        updated_at: now,
                    },
                    true,
                ),
            };
            t.insert((ns, key.as_str()), encode(&rec).as_slice())?;
            Ok((rec, created))
        })
    }

    /// One record.
    pub fn get(&self, ns: &str, digest: &Digest) -> Result<ContentRecord> {
        self.db.read("get content record", |txn| {
            get2(
                &txn.open_table(schema::CONTENT)?,
                "content",
                ns,
                &digest.to_string(),
            )?
            .ok_or_else(|| Error::not_found(what(ns, digest)))
        })
    }

    /// All records of a namespace, by digest.
    pub fn list(&self, ns: &str) -> Result<Vec<ContentRecord>> {
        self.db.read("list content records", |txn| {
            list2(&txn.open_table(schema::CONTENT)?, "content", ns)
        })
    }

    /// Updates labels with containerd's field paths (`labels`, `labels.<key>`; none = all).
    pub fn update(
        &self,
        ns: &str,
        digest: &Digest,
        labels: Labels,
        paths: &[String],
    ) -> Result<ContentRecord> {
        validate::labels(&labels)?;
        let key = digest.to_string();
        self.db.write("update content record", |txn| {
            let mut t = txn.open_table(schema::CONTENT)?;
            let mut rec: ContentRecord =
                get2(&t, "content", ns, &key)?.ok_or_else(|| Error::not_found(what(ns, digest)))?;
            if let Some(f) = apply_label_paths(&mut rec.labels, &labels, paths).first() {
                return Err(bad_field("content", f, "labels and labels.<key>"));
            }
            rec.updated_at = SystemTime::now();
            t.insert((ns, key.as_str()), encode(&rec).as_slice())?;
            Ok(rec)
        })
    }

    /// Removes the namespace's record. The blob is removed by the next collection if no
    /// other namespace records it (record first, then blob).
    pub fn delete(&self, ns: &str, digest: &Digest) -> Result<()> {
        self.db.write("delete content record", |txn| {
            let mut t = txn.open_table(schema::CONTENT)?;
            let found = t.remove((ns, digest.to_string().as_str()))?.is_some();
            if found {
                Ok(())
            } else {
                Err(Error::not_found(what(ns, digest)))
            }
        })
    }
}
