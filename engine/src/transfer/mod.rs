//! Image transfer in and out of the store: import (archive → content store → metadata →
//! snapshots), export, and image views for `berthctl images mount` — the core of the Transfer
//! service and of preloading.
//!
//! Import order, so a crash at any point leaves nothing visible half-done: blobs are written
//! and verified first (unreferenced blobs are GC's); then, per image, every content record
//! (with its `gc.ref` labels) and the image record are written; then the layers are unpacked
//! into committed snapshots (each recorded after it is committed). An image whose unpack
//! failed stays listed (its content is complete) and is unpacked again by the next import or
//! `images mount`.

mod error;

use std::collections::BTreeMap;
use std::io::{Read, Write};

use crate::content::Digest;
use crate::images::{self, export::ExportImage, import::ImportOptions, Platform};
use crate::metadata::{Descriptor, Image};
use crate::snapshots::{Mount, Snapshotter, Snapshotters};
use crate::store::Store;

pub use error::Error;

/// One image an import recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The image record's name (`import-<digest>` for an archive entry without one).
    pub name: String,
    /// What the record points at.
    pub target: Descriptor,
    /// The top chain ID when unpacked and the image has layers.
    pub chain_id: Option<Digest>,
    /// Layers applied by this import.
    pub layers_applied: usize,
    /// Layers whose snapshot existed already.
    pub layers_reused: usize,
}

/// A read-only view of an image's unpacked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// What to mount to see it.
    pub mounts: Vec<Mount>,
    /// The image's top chain ID (`None`: no layers).
    pub chain_id: Option<Digest>,
}

/// `os/arch[/variant]`; empty = linux/amd64.
pub fn parse_platform(text: &str) -> Result<Platform, String> {
    if text.is_empty() {
        return Ok(Platform::default());
    }
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() => {
            Ok(Platform::new(os, arch, Some(variant)))
        }
        _ => Err(format!(
            "platform {text:?}: expected os/arch or os/arch/variant"
        )),
    }
}

/// The snapshotter `id` (`""`: the default).
fn snapshotter(
    snapshotters: &Snapshotters,
    id: &str,
) -> Result<(String, std::sync::Arc<dyn Snapshotter>), Error> {
    let id = if id.is_empty() {
        snapshotters.default_id().unwrap_or("").to_string()
    } else {
        id.to_string()
    };
    let found = snapshotters
        .lookup(&id)
        .ok_or_else(|| Error::SnapshotterNotLoaded(id.clone()))?;
    Ok((id, found))
}

fn to_record(desc: &oci_spec::image::Descriptor) -> Result<Descriptor, Error> {
    let digest: Digest = desc.digest().to_string().parse()?;
    Ok(Descriptor {
        media_type: desc.media_type().to_string(),
        digest,
        size: desc.size(),
        annotations: desc
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

/// The blocking import of an archive (OCI layout or `docker save`) into namespace `ns`:
/// archive → store → records → unpack into `snapshotter` (`""`: the default) when `unpack`.
/// The Transfer service and [`crate::preload`] call it.
pub fn import_blocking(
    storage: &Store,
    snapshotters: &Snapshotters,
    ns: &str,
    archive: impl Read,
    snapshotter: &str,
    platform: &Platform,
    unpack: bool,
) -> Result<Vec<Imported>, Error> {
    let opts = ImportOptions {
        platform: platform.clone(),
    };
    let db = &storage.db;
    // containerd's discipline: everything the import creates belongs to a temporary lease
    // until the image records (and the unpacked chain's GC label) root it; a crash leaves
    // the lease, which expires, and GC then takes what no image references.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let lease = format!("import-{nanos}");
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    db.leases().create(
        ns,
        &lease,
        [("berth.lease/kind".to_string(), "import".to_string())]
            .into_iter()
            .collect(),
        Some(expires),
    )?;
    let result = import_leased(
        storage,
        snapshotters,
        ns,
        archive,
        snapshotter,
        platform,
        unpack,
        &opts,
        &lease,
    );
    if let Err(e) = db.leases().delete(ns, &lease) {
        tracing::warn!(
            lease,
            "cannot delete the import lease (it expires in an hour): {e}"
        );
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn import_leased(
    storage: &Store,
    snapshotters: &Snapshotters,
    ns: &str,
    archive: impl Read,
    snapshotter: &str,
    platform: &Platform,
    unpack: bool,
    opts: &ImportOptions,
    lease: &str,
) -> Result<Vec<Imported>, Error> {
    let db = &storage.db;
    let report = {
        // Blobs are written before their records: hold off the collector's blob sweep until
        // the records exist (and are on the lease).
        let _guard = db.resource_guard();
        let report = images::import::import_archive(&storage.content, archive, opts)
            .map_err(Error::Import)?;
        let labels = images::import::document_labels(&storage.content, &report);
        for (digest, size) in &report.blobs {
            db.leases().add_resource(
                ns,
                lease,
                &crate::metadata::LeaseResource::Content(*digest),
            )?;
            let l = labels.get(digest).cloned().unwrap_or_default();
            db.content().put_record(ns, *digest, *size, l)?;
        }
        report
    };
    // Unpacking takes the resource guard per snapshot itself.
    import_images(
        storage,
        snapshotters,
        ns,
        snapshotter,
        platform,
        unpack,
        &report,
        lease,
    )
}

#[allow(clippy::too_many_arguments)]
fn import_images(
    storage: &Store,
    snapshotters: &Snapshotters,
    ns: &str,
    snapshotter: &str,
    platform: &Platform,
    unpack: bool,
    report: &images::import::ImportReport,
    lease: &str,
) -> Result<Vec<Imported>, Error> {
    let db = &storage.db;
    let sn = if unpack {
        Some(self::snapshotter(snapshotters, snapshotter)?)
    } else {
        None
    };
    let mut out = Vec::new();
    for imported in &report.images {
        let target = to_record(&imported.target)?;
        let name = imported
            .name
            .clone()
            .unwrap_or_else(|| format!("import-{}", target.digest));
        let mut image = Image::new(name.clone(), target.clone(), Default::default());
        image = match db.images().create(ns, image.clone()) {
            Ok(i) => i,
            Err(crate::metadata::Error::AlreadyExists { .. }) => {
                image.created_at = std::time::SystemTime::now();
                db.images().update(ns, image, &["target".to_string()])?
            }
            Err(e) => return Err(e.into()),
        };
        let mut entry = Imported {
            name: image.name.clone(),
            target: target.clone(),
            chain_id: None,
            layers_applied: 0,
            layers_reused: 0,
        };
        if let Some((id, sn)) = &sn {
            let resolved = images::resolve(storage.content.as_ref(), &imported.target, platform)
                .map_err(|source| Error::BadImage {
                    name: name.clone(),
                    source,
                })?;
            let unpacked = crate::unpack::unpack(
                db,
                &storage.content,
                ns,
                id,
                sn.as_ref(),
                &resolved,
                Some(lease),
            )
            .map_err(|source| Error::Unpack {
                name: name.clone(),
                source,
            })?;
            entry.chain_id = unpacked.chain_id;
            entry.layers_applied = unpacked.applied;
            entry.layers_reused = unpacked.reused;
        }
        out.push(entry);
    }
    Ok(out)
}

/// The images `names` of `ns`, to export (each must exist).
pub fn export_list(storage: &Store, ns: &str, names: &[String]) -> Result<Vec<ExportImage>, Error> {
    if names.is_empty() {
        return Err(Error::InvalidArgument("export: no image names".into()));
    }
    let mut list = Vec::new();
    for name in names {
        let image = storage.db.images().get(ns, name)?;
        let target = images::descriptor(
            &image.target.media_type,
            &image.target.digest,
            image.target.size,
        );
        list.push(ExportImage {
            name: name.clone(),
            target,
        });
    }
    Ok(list)
}

/// Writes `list` as one OCI layout archive to `out` and flushes it (blocking).
pub fn export(storage: &Store, list: &[ExportImage], out: &mut impl Write) -> Result<(), Error> {
    let stats = images::export::export_oci(&storage.content, list, &Platform::default(), &mut *out);
    let flushed = out.flush();
    stats
        .map_err(|e| e.to_string())
        .and_then(|_| flushed.map_err(|e| e.to_string()))
        .map_err(Error::Export)
}

/// A read-only view named `key` of image `name` of `ns`, unpacked into `snapshotter` (`""`:
/// the default) first when needed (blocking). `platform` is `os/arch[/variant]`.
pub fn view(
    storage: &Store,
    snapshotters: &Snapshotters,
    ns: &str,
    name: &str,
    key: &str,
    platform: &str,
    snapshotter: &str,
) -> Result<View, Error> {
    if key.is_empty() {
        return Err(Error::InvalidArgument("view: empty snapshot key".into()));
    }
    let platform = parse_platform(platform).map_err(Error::InvalidArgument)?;
    let image = storage.db.images().get(ns, name)?;
    let (id, sn) = self::snapshotter(snapshotters, snapshotter)?;
    let target = images::descriptor(
        &image.target.media_type,
        &image.target.digest,
        image.target.size,
    );
    let resolved =
        images::resolve(storage.content.as_ref(), &target, &platform).map_err(|source| {
            Error::Unresolvable {
                name: image.name.clone(),
                source,
            }
        })?;
    let unpacked = crate::unpack::unpack(
        &storage.db,
        &storage.content,
        ns,
        &id,
        sn.as_ref(),
        &resolved,
        None,
    )
    .map_err(|source| Error::Unpack {
        name: image.name.clone(),
        source,
    })?;
    let parent = unpacked
        .chain_id
        .map(|c| crate::unpack::backend_name(ns, &c))
        .unwrap_or_default();
    let mounts = sn
        .view(&format!("{ns}/{key}"), &parent, BTreeMap::new())
        .map_err(|error| Error::View {
            key: key.to_owned(),
            error: Box::new(error),
        })?;
    Ok(View {
        mounts,
        chain_id: unpacked.chain_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        assert_eq!(parse_platform("").unwrap(), Platform::default());
        assert_eq!(
            parse_platform("linux/arm64/v8").unwrap(),
            Platform::new("linux", "arm64", Some("v8"))
        );
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("/amd64").is_err());
    }
}
