//! Images: a name in a namespace pointing at a descriptor in the content store.

use std::time::SystemTime;

use redb::ReadableTable;

use super::schema::{self, get2, list2};
use super::{
    apply_label_paths, bad_field, encode, ensure_namespace, validate, Db, Descriptor, Error, Image,
    Labels, Result,
};

/// Image operations (see [`Db::images`]).
#[derive(Debug, Clone, Copy)]
pub struct Images<'a> {
    pub(crate) db: &'a Db,
}

impl Image {
    /// A new image record; timestamps are set when it is stored.
    pub fn new(name: impl Into<String>, target: Descriptor, labels: Labels) -> Self {
        let now = SystemTime::now();
        Self {
            name: name.into(),
            target,
            labels,
            created_at: now,
            updated_at: now,
        }
    }
}

/// containerd's `validateImage`/`validateTarget`: the fields we store must be usable.
fn check(image: &Image) -> Result<()> {
    validate::name("image name", &image.name)?;
    validate::labels(&image.labels)?;
    check_target(&image.name, &image.target)
}

fn check_target(name: &str, target: &Descriptor) -> Result<()> {
    if target.media_type.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "image {name:?}: target media type must be set"
        )));
    }
    if target.size == 0 {
        return Err(Error::InvalidArgument(format!(
            "image {name:?}: target size must be greater than zero"
        )));
    }
    Ok(())
}

fn what(ns: &str, name: &str) -> String {
    format!("image {name:?} in namespace {ns:?}")
}

impl Images<'_> {
    /// Stores a new image; [`Error::AlreadyExists`] if the name is taken.
    pub fn create(&self, ns: &str, mut image: Image) -> Result<Image> {
        check(&image)?;
        self.db.write("create image", |txn| {
            ensure_namespace(txn, ns)?;
            let mut t = txn.open_table(schema::IMAGES)?;
            if t.get((ns, image.name.as_str()))?.is_some() {
                return Err(Error::exists(what(ns, &image.name)));
            }
            let now = SystemTime::now();
            image.created_at = now;
            image.updated_at = now;
            t.insert((ns, image.name.as_str()), encode(&image).as_slice())?;
            Ok(image)
        })
    }

    /// One image.
    pub fn get(&self, ns: &str, name: &str) -> Result<Image> {
        self.db.read("get image", |txn| {
            get2(&txn.open_table(schema::IMAGES)?, "images", ns, name)?
                .ok_or_else(|| Error::not_found(what(ns, name)))
        })
    }

    /// All images of a namespace, by name.
    pub fn list(&self, ns: &str) -> Result<Vec<Image>> {
        self.db.read("list images", |txn| {
            list2(&txn.open_table(schema::IMAGES)?, "images", ns)
        })
    }

    /// Updates an image: field paths `labels`, `labels.<key>`, `target` (none = labels and
    /// target).
    pub fn update(&self, ns: &str, image: Image, paths: &[String]) -> Result<Image> {
        // Only what changes must be valid: a labels-only update may carry any target.
        validate::name("image name", &image.name)?;
        validate::labels(&image.labels)?;
        self.db.write("update image", |txn| {
            let mut t = txn.open_table(schema::IMAGES)?;
            let mut rec: Image = get2(&t, "images", ns, &image.name)?
                .ok_or_else(|| Error::not_found(what(ns, &image.name)))?;
            let rest = apply_label_paths(&mut rec.labels, &image.labels, paths);
            if paths.is_empty() {
                rec.target = image.target.clone();
            }
            for f in rest {
                match f {
                    "target" => rec.target = image.target.clone(),
                    other => {
                        return Err(bad_field("an image", other, "labels, labels.<key>, target"))
                    }
                }
            }
            check(&rec)?;
            rec.updated_at = SystemTime::now();
            t.insert((ns, image.name.as_str()), encode(&rec).as_slice())?;
            Ok(rec)
        })
    }

    /// Deletes an image record (its content goes at the next garbage collection).
    pub fn delete(&self, ns: &str, name: &str) -> Result<()> {
        self.db.write("delete image", |txn| {
            let mut t = txn.open_table(schema::IMAGES)?;
            let found = t.remove((ns, name))?.is_some();
            if found {
                Ok(())
            } else {
                Err(Error::not_found(what(ns, name)))
            }
        })
    }
}
