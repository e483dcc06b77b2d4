//! Applying image layers (tar streams, plain or compressed) onto a directory.
//!
//! This is the "diff applier" of containerd (`core/diff/apply`, `pkg/archive`): one layer tar
//! is applied onto one directory, in one of two [`Mode`]s matching the two snapshotters:
//!
//! - [`Mode::Overlay`]: the target is an empty overlayfs *upper* directory whose lowers are
//!   the parent layers. Whiteouts `.wh.<name>` become overlay whiteouts (character device
//!   0:0) and opaque markers `.wh..wh..opq` set `trusted.overlay.opaque=y` on their
//!   directory; nothing below the upper directory is touched.
//! - [`Mode::InPlace`]: the target already holds the parent's tree (native snapshotter).
//!   Whiteouts delete, opaque markers empty the directory of everything this layer did not
//!   write.
//!
//! Safety rules (see `docs/images.md`): every name is resolved *inside* the target as if it
//! were `/` (see [`resolve`]), the final component is never followed, hardlink targets are
//! resolved inside the target too, and the compressed digest and the uncompressed diff ID are
//! computed while streaming and checked at the end. On any error the target is left
//! half-applied: the caller discards the active snapshot, as containerd does.

mod apply;
mod error;
pub(crate) mod resolve;

#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use error::{EntryError, Error};

use crate::content::Digest;
use crate::images::media::{self, Compression};

/// What the target directory is (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The target holds the parent's tree already; whiteouts delete.
    InPlace,
    /// The target is an empty overlay upper directory. `lowers` are the parent layers'
    /// directories, topmost first (as in `lowerdir=`); they are only read, to give parent
    /// directories this layer creates implicitly the metadata they have below (containerd's
    /// `WithParents`), so the merged view keeps their mode and owner.
    Overlay { lowers: Vec<PathBuf> },
}

/// What to do with character and block device entries.
///
/// Creating device nodes is what containerd does as root and what images such as old
/// distribution bases expect; `Skip` is for unpacking where `mknod` is not permitted (user
/// namespaces), `Refuse` for callers that want such images to fail loudly. FIFOs are not
/// devices and are always created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceNodes {
    /// `mknod` them (needs CAP_MKNOD).
    #[default]
    Create,
    /// Leave them out silently, counted in [`ApplyStats::devices_skipped`].
    Skip,
    /// Fail with [`EntryError::DeviceRefused`] naming the entry.
    Refuse,
}

/// Options of one layer application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    pub mode: Mode,
    pub devices: DeviceNodes,
}

impl ApplyOptions {
    /// In-place mode, device nodes created.
    pub fn in_place() -> Self {
        Self {
            mode: Mode::InPlace,
            devices: DeviceNodes::Create,
        }
    }

    /// Overlay mode over `lowers` (topmost first), device nodes created.
    pub fn overlay(lowers: Vec<PathBuf>) -> Self {
        Self {
            mode: Mode::Overlay { lowers },
            devices: DeviceNodes::Create,
        }
    }
}

/// Which layer is being applied, and what it must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The blob digest (of the bytes as stored, compressed or not).
    pub digest: Digest,
    /// The blob size from the descriptor.
    pub size: u64,
    /// The descriptor's media type; decides the expected compression.
    pub media_type: String,
    /// The expected diff ID (digest of the uncompressed tar) from the image config, when
    /// known.
    pub diff_id: Option<Digest>,
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries read (whiteouts and skipped entries included).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// Bytes of the (compressed) blob read.
    pub compressed_bytes: u64,
    /// Bytes of the uncompressed tar.
    pub uncompressed_bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Device nodes left out under [`DeviceNodes::Skip`].
    pub devices_skipped: u64,
    /// `trusted.*` attributes in the layer, never applied (they would let a layer forge
    /// overlayfs redirects or opaque markers; containerd ignores them too).
    pub xattrs_skipped: u64,
    /// The digest of the blob as read.
    pub digest: Option<Digest>,
    /// The digest of the uncompressed tar (the diff ID).
    pub diff_id: Option<Digest>,
}

/// Applies the layer blob read from `blob` onto `target`, checking its size, digest and
/// (when given) diff ID. The compression is detected from the first bytes and must agree with
/// the media type.
pub fn apply_layer(
    target: &Path,
    blob: impl Read,
    layer: &LayerRef,
    opts: &ApplyOptions,
) -> Result<ApplyStats, Error> {
    let name = layer.digest.to_string();
    let declared =
        media::layer_compression(&layer.media_type).ok_or_else(|| Error::UnsupportedMediaType {
            layer: name.clone(),
            media_type: layer.media_type.clone(),
        })?;
    let read_err = |compression: &'static str| {
        let layer = name.clone();
        move |source| Error::Read {
            layer,
            compression,
            source,
        }
    };
    let mut hashed = HashReader::new(blob);
    // The magic needs 4 bytes; a pipe or socket may hand them over in pieces.
    let mut head = [0u8; 4];
    let mut have = 0;
    while have < head.len() {
        match hashed.read(&mut head[have..]) {
            Ok(0) => break,
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err("layer")(e)),
        }
    }
    let found = Compression::detect(&head[..have]);
    if declared != Compression::None && found != declared {
        return Err(Error::CompressionMismatch {
            layer: name,
            media_type: layer.media_type.clone(),
            declared: declared.name(),
            found: found.name(),
        });
    }
    let mut stats = {
        let mut outer = BufReader::new(io::Cursor::new(head[..have].to_vec()).chain(&mut hashed));
        let stats = {
            let decompressed: Box<dyn Read + '_> = match found {
                Compression::None => Box::new(&mut outer),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut outer)),
                Compression::Zstd => Box::new(
                    zstd::stream::read::Decoder::with_buffer(&mut outer)
                        .map_err(read_err(found.name()))?,
                ),
            };
            let mut inner = HashReader::new(decompressed);
            let mut stats = apply::apply_tar(target, &mut inner, &name, found.name(), opts)?;
            // Whatever follows the tar's end blocks still belongs to the diff ID.
            io::copy(&mut inner, &mut io::sink()).map_err(read_err(found.name()))?;
            stats.uncompressed_bytes = inner.count;
            stats.diff_id = Some(inner.finish());
            stats
        };
        // And whatever follows the compressed stream still belongs to the blob.
        io::copy(&mut outer, &mut io::sink()).map_err(read_err(found.name()))?;
        stats
    };
    let outer = hashed;
    stats.compressed_bytes = outer.count;
    let digest = outer.finish();
    stats.digest = Some(digest);
    if stats.compressed_bytes != layer.size {
        return Err(Error::SizeMismatch {
            layer: name,
            expected: layer.size,
            actual: stats.compressed_bytes,
        });
    }
    if digest != layer.digest {
        return Err(Error::DigestMismatch {
            layer: name,
            what: "digest",
            expected: layer.digest,
            actual: digest,
        });
    }
    if let (Some(expected), Some(actual)) = (layer.diff_id, stats.diff_id) {
        if expected != actual {
            return Err(Error::DigestMismatch {
                layer: name,
                what: "diff_id",
                expected,
                actual,
            });
        }
    }
    Ok(stats)
}

/// Applies the layer stored as a blob file at `path` (e.g. [`crate::content::LocalStore::blob_path`]).
pub fn apply_layer_file(
    target: &Path,
    path: &Path,
    layer: &LayerRef,
    opts: &ApplyOptions,
) -> Result<ApplyStats, Error> {
    let file = File::open(path).map_err(|source| Error::Read {
        layer: layer.digest.to_string(),
        compression: "layer",
        source,
    })?;
    apply_layer(target, file, layer, opts)
}

/// Applies an uncompressed tar stream with no digest checks (tests, and callers that verify
/// elsewhere). `layer` only names the stream in errors.
pub fn apply_tar(
    target: &Path,
    tar: impl Read,
    layer: &str,
    opts: &ApplyOptions,
) -> Result<ApplyStats, Error> {
    apply::apply_tar(target, tar, layer, "tar", opts)
}

/// Counts and hashes what passes through.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> HashReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> Digest {
        Digest::from_bytes(self.hasher.finalize().into())
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}
