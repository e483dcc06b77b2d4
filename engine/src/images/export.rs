//! Export of images from the content store as an OCI image-layout tar, which both
//! `berthctl images import` and `ctr images import` read back.
//!
//! For each image everything reachable from its target is written once, for the given
//! platform: an index, the chosen manifest (other platforms' manifests too when they are in
//! the store), its config and its layers (foreign layers only when present). `index.json`
//! lists the targets with `io.containerd.image.name` (the full name) and
//! `org.opencontainers.image.ref.name` (the tag), as `ctr images export` writes them.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};

use oci_spec::image::Descriptor;

use super::{media, Platform};
use crate::content::{Digest, LocalStore, Manager};

/// Export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An image's content is incomplete or invalid.
    #[error("image {image}")]
    Image {
        image: String,
        #[source]
        source: Box<super::Error>,
    },
    /// Reading a blob or writing the archive failed.
    #[error("export {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// One image to export.
#[derive(Debug, Clone)]
pub struct ExportImage {
    pub name: String,
    pub target: Descriptor,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub blobs: u64,
    pub bytes: u64,
}

/// Writes `images` from `store` to `out` as an OCI layout tar.
pub fn export_oci(
    store: &LocalStore,
    images: &[ExportImage],
    platform: &Platform,
    out: impl Write,
) -> Result<ExportStats, ExportError> {
    let mut builder = tar::Builder::new(out);
    let mut stats = ExportStats::default();
    let io_err = |what: &str| {
        let what = what.to_owned();
        move |source| ExportError::Io { what, source }
    };
    append(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(io_err("oci-layout"))?;
    let mut written: HashSet<Digest> = HashSet::new();
    let mut manifests = Vec::new();
    for image in images {
        let image_err = |source| ExportError::Image {
            image: image.name.clone(),
            source: Box::new(source),
        };
        // Resolving first proves the platform's content is complete.
        let resolved = super::resolve(store, &image.target, platform).map_err(image_err)?;
        let mut todo = vec![image.target.clone()];
        while let Some(desc) = todo.pop() {
            let digest = super::descriptor_digest(&desc, &image.name).map_err(image_err)?;
            if written.contains(&digest) {
                continue;
            }
            let mt = desc.media_type().to_string();
            let present = store.info(&digest).is_ok();
            let required = desc == resolved.manifest_descriptor
                || desc == resolved.config_descriptor
                || desc == image.target
                || resolved
                    .layers
                    .iter()
                    .any(|l| l.digest == digest && !l.non_distributable);
            if !present {
                if required {
                    return Err(image_err(super::Error::Missing {
                        what: "blob",
                        digest,
                        parent: format!("image {}", image.name),
                    }));
                }
                continue;
            }
            if media::is_index(&mt) || media::is_manifest(&mt) {
                let (_, bytes) = super::read_document(store, &desc, "document", &image.name)
                    .map_err(image_err)?;
                todo.extend(super::children(&desc, &bytes).map_err(image_err)?);
            }
            let path = store.blob_path(&digest);
            let file = File::open(&path).map_err(io_err(&format!("blob {digest}")))?;
            let size = file
                .metadata()
                .map_err(io_err(&format!("blob {digest}")))?
                .len();
            let mut header = blob_header(size);
            builder
                .append_data(
                    &mut header,
                    format!("blobs/sha256/{}", digest.encoded()),
                    file,
                )
                .map_err(io_err(&format!("blob {digest}")))?;
            written.insert(digest);
            stats.blobs += 1;
            stats.bytes += size;
        }
        let mut desc = image.target.clone();
        let mut ann = desc.annotations().clone().unwrap_or_default();
        ann.insert(super::ANNOTATION_IMAGE_NAME.to_owned(), image.name.clone());
        if let Some(tag) = tag_of(&image.name) {
            ann.insert(super::ANNOTATION_REF_NAME.to_owned(), tag.to_owned());
        }
        desc.set_annotations(Some(ann));
        manifests.push(desc);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": manifests,
    });
    let bytes = serde_json::to_vec(&index).expect("a JSON value serialises");
    append(&mut builder, "index.json", &bytes).map_err(io_err("index.json"))?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("archive end"))?;
    Ok(stats)
}

/// The tag of a reference (`docker.io/library/busybox:1` → `1`), if it has one.
fn tag_of(name: &str) -> Option<&str> {
    let last = name.rsplit('/').next()?;
    let (_, tag) = last.split_once(':')?;
    Some(tag.split('@').next().unwrap_or(tag))
}

fn blob_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o444);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header
}

fn append<W: Write>(builder: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut header = blob_header(data.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, path, data)
}
