//! Errors of layer application. Every error names the layer (its digest, or `tar` for a bare
//! stream) and, where one is involved, the tar entry, so a bad image can be traced to the
//! exact file that made it fail.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use crate::content::Digest;

/// A layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or decompressing the layer stream failed: a truncated or corrupt gzip/zstd
    /// stream, or a malformed tar.
    #[error("layer {layer}: reading the {compression} stream failed (truncated or corrupt?)")]
    Read {
        layer: String,
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    /// The media type promises one compression and the bytes start with another's magic.
    #[error(
        "layer {layer}: media type {media_type} declares {declared} but the content is {found}"
    )]
    CompressionMismatch {
        layer: String,
        media_type: String,
        declared: &'static str,
        found: &'static str,
    },
    /// The media type is not a layer berth can apply.
    #[error("layer {layer}: media type {media_type:?} is not a layer berth can unpack")]
    UnsupportedMediaType { layer: String, media_type: String },
    /// The compressed bytes or the uncompressed tar hash to something else than expected.
    #[error("layer {layer}: {what} mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        layer: String,
        /// `digest` (compressed blob) or `diff_id` (uncompressed tar).
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    /// The blob is not the size its descriptor says.
    #[error("layer {layer}: size mismatch: descriptor says {expected} bytes, stream has {actual}")]
    SizeMismatch {
        layer: String,
        expected: u64,
        actual: u64,
    },
    /// One tar entry could not be applied.
    #[error("layer {layer}: entry {entry:?}")]
    Entry {
        layer: String,
        entry: String,
        #[source]
        source: EntryError,
    },
    /// The target directory itself could not be opened.
    #[error("open target directory {}", path.display())]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why one entry was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A system call on the entry failed.
    #[error("{op} failed")]
    Sys {
        op: &'static str,
        #[source]
        source: Errno,
    },
    /// Writing the file's data failed.
    #[error("writing file data failed")]
    Data(#[source] io::Error),
    /// A path component that must be a directory (after resolving symlinks inside the root)
    /// is something else.
    #[error("path component {component:?} is not a directory")]
    NotADirectory { component: String },
    /// Resolving the path met more symlinks than Linux itself allows (a loop).
    #[error("too many levels of symbolic links")]
    SymlinkLoop,
    /// A hardlink names a file that is not in this layer's target (resolved inside the root).
    #[error("hardlink target {target:?} does not exist inside the root")]
    HardlinkTargetMissing { target: String },
    /// Overlay mode: the hardlink target lives only in a lower layer; an overlay upper dir
    /// cannot hold a link to a lower file (containerd 1.6 fails the same way).
    #[error(
        "hardlink target {target:?} is in a lower layer; hardlinks across layers are not \
         supported in overlay mode"
    )]
    HardlinkToLowerLayer { target: String },
    /// `.wh.` followed by nothing, `.` or `..`.
    #[error("invalid whiteout name {name:?}")]
    InvalidWhiteout { name: String },
    /// A character or block device while [`super::DeviceNodes::Refuse`] is set.
    #[error("device nodes are refused by the unpack options")]
    DeviceRefused,
    /// A tar entry type berth does not apply.
    #[error("unsupported tar entry type {0:?}")]
    UnsupportedType(u8),
    /// Setting an extended attribute failed (other than "not supported", which is logged).
    #[error("set extended attribute {name:?}")]
    Xattr {
        name: String,
        #[source]
        source: io::Error,
    },
    /// A header field that cannot be read (bad number, bad PAX record).
    #[error("malformed header: {0}")]
    Header(#[source] io::Error),
}
