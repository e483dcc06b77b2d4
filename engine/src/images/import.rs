//! Import of image archives into the content store: OCI image layouts (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) and `docker save` archives (`manifest.json` listing
//! `Config`, `RepoTags` and `Layers` per image, several images per archive).
//!
//! The archive is read once, as a stream (a file or stdin): every file that can be content
//! goes straight into the store through an ingest, hashed as it is written; files named
//! `blobs/sha256/<hex>` must hash to their name. Only the small metadata files
//! (`index.json`, `manifest.json`, `oci-layout`, `repositories`) are held in memory. When
//! the stream ends, the images are assembled and every reference checked (see
//! [`import_archive`]). `docker save` images get a Docker schema 2 manifest written to the
//! store, as containerd's importer does, so both kinds end as an image name → manifest.
//!
//! Nothing is recorded in the metadata database here: the caller gets the list of imported
//! images and blobs and records them (with [`super::gc_ref_labels`]) in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{Descriptor, ImageIndex};

use super::{media, Platform};
use crate::content::{self, Digest, IngestManager, Ingester, LocalStore, Manager, Provider};

/// Import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The archive stream itself is unreadable (truncated, not a tar).
    #[error("read the image archive")]
    Read(#[source] io::Error),
    /// Reading one file of the archive failed.
    #[error("read {path:?} from the image archive")]
    ReadFile {
        path: String,
        #[source]
        source: io::Error,
    },
    /// A `blobs/<alg>/<hex>` file whose name is not a valid sha256 digest.
    #[error("archive file {path:?} is under blobs/ but its name is not a sha256 digest")]
    BadBlobName {
        path: String,
        #[source]
        source: content::DigestError,
    },
    /// A blob file does not hash to its name (or a legacy layer to its diff ID).
    #[error("archive file {path:?}: digest mismatch: expected {expected}, actual {actual}")]
    DigestMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    /// Writing to the content store failed.
    #[error("store {path:?} in the content store")]
    Store {
        path: String,
        #[source]
        source: Box<content::Error>,
    },
    /// Neither an OCI layout nor a docker save archive.
    #[error("the archive has neither index.json (OCI layout) nor manifest.json (docker save)")]
    UnknownFormat,
    /// A metadata file does not parse.
    #[error("archive file {path:?} is not valid")]
    Metadata {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// `manifest.json` names a file the archive does not have.
    #[error("manifest.json entry {image}: {what} file {path:?} is not in the archive")]
    MissingFile {
        image: String,
        what: &'static str,
        path: String,
    },
    /// A referenced blob is missing or an image document is invalid.
    #[error("image {image}")]
    Image {
        image: String,
        #[source]
        source: Box<super::Error>,
    },
}

/// One image found in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// The image name: `io.containerd.image.name`, else `org.opencontainers.image.ref.name`
    /// (which may be only a tag) for OCI layouts; each normalised `RepoTags` entry for
    /// docker save (`busybox:1` → `docker.io/library/busybox:1`). `None` when the archive
    /// names none: the caller names it (containerd uses the digest).
    pub name: Option<String>,
    /// The index or manifest the name points at.
    pub target: Descriptor,
}

/// What an import stored.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    pub images: Vec<ImportedImage>,
    /// Every blob written or found already present (digest, size), including the manifests
    /// berth wrote for docker save images.
    pub blobs: Vec<(Digest, u64)>,
}

/// What [`import_archive`] checks.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The platform whose manifest, config and layers must all be present. Other
    /// platforms' manifests of an index may be absent (partial multi-platform archives).
    pub platform: Platform,
}

const METADATA_FILES: [&str; 4] = ["oci-layout", "index.json", "manifest.json", "repositories"];

/// Reads an image archive from `archive` into `store` and returns the images it holds.
///
/// Checks: every `blobs/sha256/<hex>` file hashes to its name; every descriptor an
/// `index.json` or `manifest.json` leads to, for `opts.platform`, is present (foreign layers
/// excepted) and hashes to its digest; documents parse; legacy uncompressed docker layers
/// hash to their config's diff IDs. The first failure is returned, naming the file or blob.
/// Blobs stored before a failure stay in the store unreferenced, for GC.
pub fn import_archive(
    store: &LocalStore,
    archive: impl Read,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let mut files: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut metadata: HashMap<String, Vec<u8>> = HashMap::new();
    // tar reads 512-byte headers one at a time: buffer so a file or pipe is not read in
    // header-sized system calls.
    let mut tar = tar::Archive::new(io::BufReader::with_capacity(1 << 20, archive));
    for entry in tar.entries().map_err(ImportError::Read)? {
        let mut entry = entry.map_err(ImportError::Read)?;
        let path = clean_path(&entry.path_bytes());
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                // Older `docker save` links a layer shared by two images.
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                    path.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned()
                } else {
                    String::new()
                };
                let joined = format!("{base}/{}", String::from_utf8_lossy(&target));
                links.insert(path, clean_path(joined.as_bytes()));
                continue;
            }
            _ => continue,
        }
        if METADATA_FILES.contains(&path.as_str()) {
            let mut buf = Vec::new();
            (&mut entry)
                .take(super::MAX_DOCUMENT_SIZE + 1)
                .read_to_end(&mut buf)
                .map_err(|source| ImportError::ReadFile {
                    path: path.clone(),
                    source,
                })?;
            metadata.insert(path, buf);
            continue;
        }
        let expected =
            match path.strip_prefix("blobs/") {
                Some(rest) => Some(rest.replacen('/', ":", 1).parse::<Digest>().map_err(
                    |source| ImportError::BadBlobName {
                        path: path.clone(),
                        source,
                    },
                )?),
                None => None,
            };
        let size = entry.size();
        let digest = store_blob(store, &path, &mut entry, expected, size)?;
        files.insert(path, (digest, size));
    }
    let lookup = |name: &str| -> Option<(Digest, u64)> {
        let mut name = clean_path(name.as_bytes());
        for _ in 0..8 {
            if let Some(f) = files.get(&name) {
                return Some(*f);
            }
            name = links.get(&name)?.clone();
        }
        None
    };
    let mut report = ImportReport {
        blobs: files.values().copied().collect(),
        ..Default::default()
    };
    if let Some(index) = metadata.get("index.json") {
        report.images = import_oci(store, index, opts)?;
    } else if let Some(manifest) = metadata.get("manifest.json") {
        let (images, written) = import_docker(store, manifest, &lookup, opts)?;
        report.images = images;
        report.blobs.extend(written);
    } else {
        return Err(ImportError::UnknownFormat);
    }
    report.blobs.sort();
    report.blobs.dedup();
    Ok(report)
}

/// Archive names cleaned of `./` and duplicate slashes, `..` dropped at the top.
fn clean_path(raw: &[u8]) -> String {
    let comps = crate::archive::resolve::clean(raw);
    comps
        .iter()
        .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// A unique ingest ref per file of this import, so concurrent imports never share one.
fn ingest_ref(path: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "import-{}-{nanos}-{}-{path}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Streams one file into the store, verified against `expected` when given.
fn store_blob(
    store: &LocalStore,
    path: &str,
    data: &mut impl Read,
    expected: Option<Digest>,
    size: u64,
) -> Result<Digest, ImportError> {
    let store_err = |source| ImportError::Store {
        path: path.to_owned(),
        source: Box::new(source),
    };
    if let Some(d) = expected {
        // Already present (a second import of the same layers): skip the write, but still
        // consume the bytes; the stored blob was verified when it was committed.
        if store.info(&d).is_ok_and(|i| i.size == size) {
            io::copy(data, &mut io::sink()).map_err(|source| ImportError::ReadFile {
                path: path.to_owned(),
                source,
            })?;
            return Ok(d);
        }
    }
    let reference = ingest_ref(path);
    let mut writer = store.writer(&reference, None).map_err(store_err)?;
    let copied = copy_in_chunks(data, &mut writer);
    let result = match copied.map(|_| writer.digest()) {
        Err(source) => {
            drop(writer);
            Err(ImportError::ReadFile {
                path: path.to_owned(),
                source,
            })
        }
        Ok(actual) => match expected {
            Some(expected) if expected != actual => {
                drop(writer);
                Err(ImportError::DigestMismatch {
                    path: path.to_owned(),
                    expected,
                    actual,
                })
            }
            _ => match writer.commit(size, actual) {
                Ok(_) | Err(content::Error::AlreadyExists { .. }) => return Ok(actual),
                Err(e) => Err(store_err(e)),
            },
        },
    };
    // The ingest is useless after a failure: drop it rather than leave it for resumption
    // (the writer holds the ingest's lock until dropped).
    let _ = store.abort(&reference);
    result
}

/// Copies into the ingest in large chunks: each [`content::Writer::write`] also records the
/// ingest's update time in a file, so `io::copy`'s 8 KiB writes would cost one extra file
/// rewrite per 8 KiB (measured: 20 s for a 43 MB archive on a loaded 2-core host).
fn copy_in_chunks(from: &mut impl Read, to: &mut content::Writer) -> io::Result<u64> {
    const CHUNK: usize = 4 << 20;
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0;
    loop {
        // Fill the chunk (tar entries hand data over in small reads) before writing it.
        let mut filled = 0;
        while filled < CHUNK {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(total);
        }
        to.write(&buf[..filled]).map_err(io::Error::other)?;
        total += filled as u64;
        if filled < CHUNK {
            return Ok(total);
        }
    }
}

/// Checks that the image `target` names is complete for the platform, and that any present
/// manifest of an index is complete too.
fn verify(
    store: &LocalStore,
    target: &Descriptor,
    name: &str,
    opts: &ImportOptions,
) -> Result<(), ImportError> {
    let image_err = |source| ImportError::Image {
        image: name.to_owned(),
        source: Box::new(source),
    };
    let resolved = super::resolve(store, target, &opts.platform).map_err(image_err)?;
    for layer in &resolved.layers {
        match store.info(&layer.digest) {
            Ok(info) if info.size == layer.size => {}
            Ok(info) => {
                return Err(image_err(super::Error::Invalid {
                    what: "layer",
                    digest: layer.digest,
                    reason: format!(
                        "descriptor says {} bytes, the blob has {}",
                        layer.size, info.size
                    ),
                }))
            }
            Err(_) if layer.non_distributable => {}
            Err(_) => {
                return Err(image_err(super::Error::Missing {
                    what: "layer",
                    digest: layer.digest,
                    parent: format!("manifest {}", resolved.manifest_descriptor.digest()),
                }))
            }
        }
    }
    Ok(())
}

fn image_name(desc: &Descriptor) -> Option<String> {
    let ann = desc.annotations().as_ref()?;
    ann.get(super::ANNOTATION_IMAGE_NAME)
        .or_else(|| ann.get(super::ANNOTATION_REF_NAME))
        .cloned()
}

fn import_oci(
    store: &LocalStore,
    index: &[u8],
    opts: &ImportOptions,
) -> Result<Vec<ImportedImage>, ImportError> {
    let index: ImageIndex =
        serde_json::from_slice(index).map_err(|source| ImportError::Metadata {
            path: "index.json".to_owned(),
            source,
        })?;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let name = image_name(desc);
        let shown = name.clone().unwrap_or_else(|| desc.digest().to_string());
        verify(store, desc, &shown, opts)?;
        out.push(ImportedImage {
            name,
            target: desc.clone(),
        });
    }
    Ok(out)
}

/// One entry of `manifest.json` (docker's `tarexport` format).
#[derive(serde::Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

type Lookup<'a> = dyn Fn(&str) -> Option<(Digest, u64)> + 'a;

/// Images found in `manifest.json`, and the manifests written for them.
type DockerImport = (Vec<ImportedImage>, Vec<(Digest, u64)>);

fn import_docker(
    store: &LocalStore,
    manifest: &[u8],
    lookup: &Lookup<'_>,
    opts: &ImportOptions,
) -> Result<DockerImport, ImportError> {
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(manifest).map_err(|source| ImportError::Metadata {
            path: "manifest.json".to_owned(),
            source,
        })?;
    let mut images = Vec::new();
    let mut written = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let shown = entry
            .repo_tags
            .as_ref()
            .and_then(|t| t.first().cloned())
            .unwrap_or_else(|| format!("#{i}"));
        let missing = |what, path: &str| ImportError::MissingFile {
            image: shown.clone(),
            what,
            path: path.to_owned(),
        };
        let (cdigest, csize) =
            lookup(&entry.config).ok_or_else(|| missing("config", &entry.config))?;
        let cdesc = super::descriptor(media::DOCKER_CONFIG, &cdigest, csize);
        let (_, cbytes) =
            super::read_document(store, &cdesc, "config", "manifest.json").map_err(|source| {
                ImportError::Image {
                    image: shown.clone(),
                    source: Box::new(source),
                }
            })?;
        let config =
            super::parse_config(&cdigest, &cbytes).map_err(|source| ImportError::Image {
                image: shown.clone(),
                source: Box::new(source),
            })?;
        let mut layers = Vec::new();
        for (n, layer) in entry.layers.iter().enumerate() {
            let (digest, size) = lookup(layer).ok_or_else(|| missing("layer", layer))?;
            let head = store
                .reader_at(&digest)
                .and_then(|r| r.read_range(0, 4))
                .map_err(|source| ImportError::Store {
                    path: layer.clone(),
                    source: Box::new(source),
                })?;
            let media_type = match media::Compression::detect(&head) {
                media::Compression::None => {
                    // Uncompressed: the blob digest is the diff ID; check it.
                    if let Some(diff) = config.rootfs().diff_ids().get(n) {
                        if let Ok(diff) = diff.parse::<Digest>() {
                            if diff != digest {
                                return Err(ImportError::DigestMismatch {
                                    path: layer.clone(),
                                    expected: diff,
                                    actual: digest,
                                });
                            }
                        }
                    }
                    media::DOCKER_LAYER
                }
                media::Compression::Gzip => media::DOCKER_LAYER_GZIP,
                media::Compression::Zstd => media::DOCKER_LAYER_ZSTD,
            };
            layers.push(super::descriptor(media_type, &digest, size));
        }
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": cdesc,
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&doc).expect("a JSON value serialises");
        let mdigest = store_blob(
            store,
            "manifest.json",
            &mut bytes.as_slice(),
            None,
            bytes.len() as u64,
        )?;
        written.push((mdigest, bytes.len() as u64));
        let target = super::descriptor(media::DOCKER_MANIFEST, &mdigest, bytes.len() as u64);
        verify(store, &target, &shown, opts)?;
        match &entry.repo_tags {
            Some(tags) if !tags.is_empty() => {
                for tag in tags {
                    images.push(ImportedImage {
                        name: Some(normalize_reference(tag)),
                        target: target.clone(),
                    });
                }
            }
            _ => images.push(ImportedImage { name: None, target }),
        }
    }
    Ok((images, written))
}

/// Docker's reference normalisation: `busybox` → `docker.io/library/busybox:latest`,
/// `me/app:1` → `docker.io/me/app:1`; names whose first component looks like a host
/// (has `.` or `:`, or is `localhost`) are kept.
pub fn normalize_reference(name: &str) -> String {
    let (first, _) = name.split_once('/').unwrap_or(("", name));
    let mut out = if name.contains('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            name.to_owned()
        } else {
            format!("docker.io/{name}")
        }
    } else {
        format!("docker.io/library/{name}")
    };
    let last = out.rsplit('/').next().unwrap_or("");
    if !last.contains(':') && !last.contains('@') {
        out.push_str(":latest");
    }
    out
}

/// For tests and callers that want the labels of everything an import wrote: the
/// `gc.ref.content` labels of each stored document, by digest.
pub fn document_labels(
    store: &LocalStore,
    report: &ImportReport,
) -> BTreeMap<Digest, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    let mut todo: Vec<Descriptor> = report.images.iter().map(|i| i.target.clone()).collect();
    while let Some(desc) = todo.pop() {
        let mt = desc.media_type().to_string();
        if !(media::is_index(&mt) || media::is_manifest(&mt))
            || !seen.insert(desc.digest().to_string())
        {
            continue;
        }
        let Ok((digest, bytes)) = super::read_document(store, &desc, "document", "import") else {
            continue;
        };
        if let Ok(labels) = super::gc_ref_labels(&desc, &bytes) {
            out.insert(digest, labels);
        }
        if let Ok(children) = super::children(&desc, &bytes) {
            todo.extend(children);
        }
    }
    out
}
