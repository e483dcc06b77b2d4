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

/// Bytes of decompressed tar handed from the decompressing thread to the applying one at a
/// time, and how many such chunks may wait: enough to keep both busy, little memory.
const PIPE_CHUNK: usize = 256 * 1024;
const PIPE_DEPTH: usize = 8;
/// Read size on the compressed blob (each read of a content-store blob is one `pread`).
const BLOB_BUFFER: usize = 256 * 1024;

/// What the decompressing thread computed over the whole blob.
struct Streamed {
    compressed_bytes: u64,
    digest: Digest,
    uncompressed_bytes: u64,
    diff_id: Digest,
}

/// Applies the layer blob read from `blob` onto `target`, checking its size, digest and
/// (when given) diff ID. The compression is detected from the first bytes and must agree with
/// the media type.
///
/// Two threads share the work: one reads the blob, hashes it, decompresses and hashes the tar
/// (the diff ID); the calling one parses the tar and writes the files. Decompression and the
/// filesystem calls then overlap instead of alternating (a pull's unpack is CPU-bound on
/// both; see `docs/performance.md`).
pub fn apply_layer(
    target: &Path,
    blob: impl Read + Send,
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
    let head = head[..have].to_vec();
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPE_DEPTH);
    let (applied, streamed) = std::thread::scope(|scope| {
        let producer = std::thread::Builder::new()
            .name("layer-inflate".into())
            .spawn_scoped(scope, move || decompress_into(head, hashed, found, tx));
        let producer = match producer {
            Ok(p) => p,
            Err(e) => return (Err(read_err(found.name())(e)), None),
        };
        let mut tar = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        let applied =
            apply::apply_tar(target, &mut tar, &name, found.name(), opts).and_then(|stats| {
                // Whatever follows the tar's end blocks still belongs to the diff ID: let the
                // decompressor finish.
                io::copy(&mut tar, &mut io::sink()).map_err(read_err(found.name()))?;
                Ok(stats)
            });
        // On an error the receiver goes first, so the decompressor's next send fails and
        // it stops instead of inflating the rest.
        drop(tar);
        // `None`: the thread panicked.
        let streamed = producer.join().ok();
        (applied, streamed)
    });
    let mut stats = applied?;
    let streamed = match streamed {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(read_err(found.name())(e)),
        None => {
            return Err(read_err(found.name())(io::Error::other(
                "the decompressing thread panicked",
            )))
        }
    };
    stats.uncompressed_bytes = streamed.uncompressed_bytes;
    stats.diff_id = Some(streamed.diff_id);
    stats.compressed_bytes = streamed.compressed_bytes;
    let digest = streamed.digest;
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

/// The decompressing side of [`apply_layer`]: reads the rest of the blob after `head`,
/// decompresses it and sends the tar in chunks, hashing both. A read or decompression error
/// is sent to the applier (it fails the tar where it stands) and returned. When the applier
/// has gone (it failed), stops.
fn decompress_into<R: Read>(
    head: Vec<u8>,
    hashed: HashReader<R>,
    found: Compression,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<Streamed> {
    let mut outer = BufReader::with_capacity(BLOB_BUFFER, io::Cursor::new(head).chain(hashed));
    let (uncompressed_bytes, diff_id) = {
        let decompressed: io::Result<Box<dyn Read + '_>> = match found {
            Compression::None => Ok(Box::new(&mut outer)),
            Compression::Gzip => Ok(Box::new(flate2::read::MultiGzDecoder::new(&mut outer))),
            Compression::Zstd => zstd::stream::read::Decoder::with_buffer(&mut outer)
                .map(|d| Box::new(d) as Box<dyn Read + '_>),
        };
        let mut inner = match decompressed {
            Ok(d) => HashReader::new(d),
            Err(e) => {
                let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        };
        loop {
            let mut chunk = vec![0u8; PIPE_CHUNK];
            let mut filled = 0;
            while filled < chunk.len() {
                match inner.read(&mut chunk[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                }
            }
            if filled == 0 {
                break;
            }
            chunk.truncate(filled);
            if tx.send(Ok(chunk)).is_err() {
                return Err(io::Error::other("the layer applier stopped"));
            }
        }
        (inner.count, inner.finish())
    };
    drop(tx);
    // Whatever follows the compressed stream still belongs to the blob.
    io::copy(&mut outer, &mut io::sink())?;
    let (_, hashed) = outer.into_inner().into_inner();
    Ok(Streamed {
        compressed_bytes: hashed.count,
        digest: hashed.finish(),
        uncompressed_bytes,
        diff_id,
    })
}

/// The applying side of [`apply_layer`]: the tar as the decompressing thread sends it.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The sender is gone after the last chunk: the end of the tar.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
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
