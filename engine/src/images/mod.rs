//! Images: OCI and Docker schema 2 manifests, indexes and configs, platform selection,
//! chain IDs, the garbage-collection labels containerd puts on image content, and import
//! and export of image archives.
//!
//! An image is a name pointing at a *target* descriptor (an index or a manifest). [`resolve`]
//! follows it for one [`Platform`] down to the manifest, the config and the layers with
//! their diff IDs and chain IDs: everything an unpacker needs to turn layers into snapshots
//! (snapshot key = chain ID, as in containerd, so images sharing layers share snapshots).

mod error;
pub mod export;
pub mod import;
pub mod media;
mod platform;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

pub use error::{Error, Result};
pub use platform::Platform;

use crate::content::{Digest, Provider};

/// Label on index/manifest/config content naming content it references, so GC follows it
/// (`containerd.io/gc.ref.content.<suffix>`).
pub const GC_REF_CONTENT_PREFIX: &str = "containerd.io/gc.ref.content";
/// Label on config content naming the snapshot of the image's top layer, per snapshotter
/// (`containerd.io/gc.ref.snapshot.<snapshotter>` = chain ID).
pub const GC_REF_SNAPSHOT_PREFIX: &str = "containerd.io/gc.ref.snapshot";
/// Label on compressed layer content holding its diff ID.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";
/// Annotation naming an image in an OCI layout written by containerd (full reference).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation naming a manifest in a layout (often only the tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Image documents larger than this are refused: real ones are kilobytes, and the whole
/// document is read into memory to parse it.
pub const MAX_DOCUMENT_SIZE: u64 = 16 << 20;

/// Deepest index nesting followed.
const MAX_INDEX_DEPTH: usize = 8;

/// One layer of a resolved image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub descriptor: Descriptor,
    /// The blob digest.
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    /// Digest of the uncompressed tar, from the config.
    pub diff_id: Digest,
    /// Identity of the filesystem after applying this and all lower layers: the snapshot
    /// name the unpacker commits to.
    pub chain_id: Digest,
    /// Foreign/non-distributable: the blob may legitimately be absent.
    pub non_distributable: bool,
}

/// An image followed for one platform.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// What the image name points at (index or manifest).
    pub target: Descriptor,
    pub manifest_descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config_descriptor: Descriptor,
    pub config: ImageConfiguration,
    /// Base layer first.
    pub layers: Vec<Layer>,
}

impl ResolvedImage {
    /// The chain ID of the top layer: the image's snapshot (`None` for an image with no
    /// layers).
    pub fn top_chain_id(&self) -> Option<Digest> {
        self.layers.last().map(|l| l.chain_id)
    }
}

/// The digest of a descriptor as berth's [`Digest`].
pub fn descriptor_digest(desc: &Descriptor, parent: &str) -> Result<Digest> {
    desc.digest()
        .to_string()
        .parse()
        .map_err(|source| Error::Digest {
            parent: parent.to_owned(),
            source,
        })
}

/// A descriptor for berth-written content.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Descriptor {
    let d: oci_spec::image::Digest = digest
        .to_string()
        .parse()
        .expect("a berth digest is a valid OCI digest");
    Descriptor::new(media_type.into(), size, d)
}

/// Reads a document blob, checking size, digest and the size cap.
pub fn read_document(
    store: &impl Provider,
    desc: &Descriptor,
    what: &'static str,
    parent: &str,
) -> Result<(Digest, Vec<u8>)> {
    let digest = descriptor_digest(desc, parent)?;
    if desc.size() > MAX_DOCUMENT_SIZE {
        return Err(Error::Invalid {
            what,
            digest,
            reason: format!(
                "descriptor size {} exceeds the {MAX_DOCUMENT_SIZE}-byte limit for documents",
                desc.size()
            ),
        });
    }
    let reader = store.reader_at(&digest).map_err(|source| match source {
        crate::content::Error::NotFound { .. } => Error::Missing {
            what,
            digest,
            parent: parent.to_owned(),
        },
        source => Error::Content {
            what,
            digest,
            source: Box::new(source),
        },
    })?;
    let bytes = reader
        .read_range(0, MAX_DOCUMENT_SIZE + 1)
        .map_err(|source| Error::Content {
            what,
            digest,
            source: Box::new(source),
        })?;
    if bytes.len() as u64 != desc.size() {
        return Err(Error::Invalid {
            what,
            digest,
            reason: format!(
                "descriptor in {parent} says {} bytes, the blob has {}",
                desc.size(),
                bytes.len()
            ),
        });
    }
    if Digest::of(&bytes) != digest {
        return Err(Error::Invalid {
            what,
            digest,
            reason: "content does not hash to its digest".to_owned(),
        });
    }
    Ok((digest, bytes))
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &'static str,
    digest: &Digest,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Parse {
        what,
        digest: *digest,
        source,
    })
}

/// The `mediaType` field inside a document, if any.
fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

fn check_schema(
    what: &'static str,
    digest: &Digest,
    schema: u32,
    bytes: &[u8],
    declared: Option<&str>,
) -> Result<()> {
    if schema != 2 {
        return Err(Error::Invalid {
            what,
            digest: *digest,
            reason: format!("schemaVersion is {schema}, expected 2"),
        });
    }
    if let (Some(inner), Some(declared)) = (embedded_media_type(bytes), declared) {
        if inner != declared {
            return Err(Error::Invalid {
                what,
                digest: *digest,
                reason: format!(
                    "its mediaType {inner:?} differs from the descriptor's {declared:?}"
                ),
            });
        }
    }
    Ok(())
}

/// Parses an image manifest (OCI or Docker schema 2). `declared` is the referencing
/// descriptor's media type, checked against the document's own.
pub fn parse_manifest(
    digest: &Digest,
    bytes: &[u8],
    declared: Option<&str>,
) -> Result<ImageManifest> {
    let m: ImageManifest = parse("manifest", digest, bytes)?;
    check_schema("manifest", digest, m.schema_version(), bytes, declared)?;
    Ok(m)
}

/// Parses an index (OCI index or Docker manifest list).
pub fn parse_index(digest: &Digest, bytes: &[u8], declared: Option<&str>) -> Result<ImageIndex> {
    let i: ImageIndex = parse("index", digest, bytes)?;
    check_schema("index", digest, i.schema_version(), bytes, declared)?;
    Ok(i)
}

/// Parses an image config (OCI or Docker).
pub fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<ImageConfiguration> {
    let c: ImageConfiguration = parse("config", digest, bytes)?;
    if c.rootfs().typ() != "layers" {
        return Err(Error::Invalid {
            what: "config",
            digest: *digest,
            reason: format!("rootfs.type is {:?}, expected \"layers\"", c.rootfs().typ()),
        });
    }
    Ok(c)
}

/// Chain IDs for a stack of diff IDs (base first): `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])` (OCI image spec, config.md).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => *diff,
            Some(parent) => {
                Digest::from_bytes(Sha256::digest(format!("{parent} {diff}").as_bytes()).into())
            }
        };
        out.push(next);
    }
    out
}

/// Follows `target` (index or manifest) for `platform` to its manifest, config and layers.
pub fn resolve(
    store: &impl Provider,
    target: &Descriptor,
    platform: &Platform,
) -> Result<ResolvedImage> {
    let manifest_descriptor = select_manifest(store, target, platform, "the image target", 0)?;
    let (mdigest, mbytes) = read_document(store, &manifest_descriptor, "manifest", "its index")?;
    let manifest = parse_manifest(
        &mdigest,
        &mbytes,
        Some(manifest_descriptor.media_type().as_ref()),
    )?;
    let parent = format!("manifest {mdigest}");
    let config_descriptor = manifest.config().clone();
    let (cdigest, cbytes) = read_document(store, &config_descriptor, "config", &parent)?;
    let config = parse_config(&cdigest, &cbytes)?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse::<Digest>().map_err(|source| Error::Digest {
                parent: format!("config {cdigest} (rootfs.diff_ids)"),
                source,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Invalid {
            what: "manifest",
            digest: mdigest,
            reason: format!(
                "{} layers but its config {cdigest} lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let chains = chain_ids(&diff_ids);
    let mut layers = Vec::with_capacity(diff_ids.len());
    for ((desc, diff_id), chain_id) in manifest.layers().iter().zip(diff_ids).zip(chains) {
        let media_type = desc.media_type().to_string();
        if media::layer_compression(&media_type).is_none() {
            return Err(Error::Invalid {
                what: "manifest",
                digest: mdigest,
                reason: format!("layer media type {media_type:?} is not a layer berth can unpack"),
            });
        }
        layers.push(Layer {
            digest: descriptor_digest(desc, &parent)?,
            size: desc.size(),
            non_distributable: media::is_non_distributable(&media_type),
            media_type,
            diff_id,
            chain_id,
            descriptor: desc.clone(),
        });
    }
    Ok(ResolvedImage {
        target: target.clone(),
        manifest_descriptor,
        manifest,
        config_descriptor,
        config,
        layers,
    })
}

/// The manifest descriptor `desc` stands for on `platform`: itself if it is a manifest, the
/// best-ranked entry (first among equals) if it is an index.
fn select_manifest(
    store: &impl Provider,
    desc: &Descriptor,
    platform: &Platform,
    parent: &str,
    depth: usize,
) -> Result<Descriptor> {
    let media_type = desc.media_type().to_string();
    if media::is_manifest(&media_type) {
        return Ok(desc.clone());
    }
    let digest = descriptor_digest(desc, parent)?;
    if !media::is_index(&media_type) {
        return Err(Error::NotAnImage { digest, media_type });
    }
    if depth >= MAX_INDEX_DEPTH {
        return Err(Error::TooDeep {
            digest,
            max: MAX_INDEX_DEPTH,
        });
    }
    let (_, bytes) = read_document(store, desc, "index", parent)?;
    let index = parse_index(&digest, &bytes, Some(&media_type))?;
    let mut best: Option<(usize, &Descriptor)> = None;
    let mut available = Vec::new();
    for m in index.manifests() {
        let mt = m.media_type().to_string();
        if !media::is_manifest(&mt) && !media::is_index(&mt) {
            continue;
        }
        let rank = match m.platform() {
            Some(p) => {
                let p = Platform::from_oci(p);
                available.push(p.to_string());
                platform.rank(&p)
            }
            // An entry without a platform (a nested index, or a single-platform layout)
            // matches anything, after the exact matches (containerd treats it the same).
            None => {
                available.push("(no platform)".to_owned());
                Some(usize::MAX)
            }
        };
        if let Some(rank) = rank {
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, m));
            }
        }
    }
    let Some((_, chosen)) = best else {
        return Err(Error::NoMatchingPlatform {
            digest,
            wanted: platform.to_string(),
            available: if available.is_empty() {
                "no manifests".to_owned()
            } else {
                available.join(", ")
            },
        });
    };
    select_manifest(
        store,
        chosen,
        platform,
        &format!("index {digest}"),
        depth + 1,
    )
}

/// The descriptors a document references: an index's manifests, a manifest's config and
/// layers, nothing for anything else.
pub fn children(desc: &Descriptor, bytes: &[u8]) -> Result<Vec<Descriptor>> {
    let media_type = desc.media_type().to_string();
    let digest = descriptor_digest(desc, "children")?;
    if media::is_index(&media_type) {
        return Ok(parse_index(&digest, bytes, Some(&media_type))?
            .manifests()
            .clone());
    }
    if media::is_manifest(&media_type) {
        let m = parse_manifest(&digest, bytes, Some(&media_type))?;
        let mut out = vec![m.config().clone()];
        out.extend(m.layers().iter().cloned());
        return Ok(out);
    }
    Ok(Vec::new())
}

/// The `containerd.io/gc.ref.content.*` labels containerd sets on an index (`m.<i>` per
/// manifest) or a manifest (`config`, `l.<i>` per layer), so GC keeps what they reference.
pub fn gc_ref_labels(desc: &Descriptor, bytes: &[u8]) -> Result<BTreeMap<String, String>> {
    let media_type = desc.media_type().to_string();
    let digest = descriptor_digest(desc, "labels")?;
    let mut labels = BTreeMap::new();
    if media::is_index(&media_type) {
        let index = parse_index(&digest, bytes, Some(&media_type))?;
        for (i, m) in index.manifests().iter().enumerate() {
            labels.insert(
                format!("{GC_REF_CONTENT_PREFIX}.m.{i}"),
                m.digest().to_string(),
            );
        }
    } else if media::is_manifest(&media_type) {
        let m = parse_manifest(&digest, bytes, Some(&media_type))?;
        labels.insert(
            format!("{GC_REF_CONTENT_PREFIX}.config"),
            m.config().digest().to_string(),
        );
        for (i, l) in m.layers().iter().enumerate() {
            labels.insert(
                format!("{GC_REF_CONTENT_PREFIX}.l.{i}"),
                l.digest().to_string(),
            );
        }
    }
    Ok(labels)
}

/// The label the unpacker sets on the config once the image is unpacked by `snapshotter`:
/// `(containerd.io/gc.ref.snapshot.<snapshotter>, top chain ID)`.
pub fn gc_snapshot_label(snapshotter: &str, top_chain_id: &Digest) -> (String, String) {
    (
        format!("{GC_REF_SNAPSHOT_PREFIX}.{snapshotter}"),
        top_chain_id.to_string(),
    )
}
