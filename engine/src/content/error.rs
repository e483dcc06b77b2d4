//! The content store's errors.
//!
//! Variants follow containerd's errdefs classes (not found, already exists, invalid argument,
//! locked/unavailable), which [`Classify`] names for the services' status mapping.

use std::io;
use std::path::PathBuf;

use berth_api::errdefs::{Classify, Kind};

use super::digest::{Digest, DigestError};

/// A content store error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No blob with this digest, or no ingest with this ref.
    #[error("{what} not found")]
    NotFound { what: String },
    /// The blob is already in the store. A commit that finds its blob present discards its
    /// ingest and returns this, as containerd does: callers treat it as success.
    #[error("content {digest} already exists")]
    AlreadyExists { digest: Digest },
    /// The request itself is wrong (mismatched size or digest, bad offset, bad digest text).
    #[error(transparent)]
    InvalidArgument(#[from] Invalid),
    /// Another writer holds this ref (in this process or another).
    #[error("ref {reference:?} is locked by another writer")]
    Locked { reference: String },
    /// A filesystem operation failed.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The kinds of invalid argument, each naming what was expected and what was found.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// The digest text could not be parsed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// Committed or expected size differs from the bytes written.
    #[error("ref {reference:?}: size mismatch: expected {expected} bytes, have {actual}")]
    SizeMismatch {
        reference: String,
        expected: u64,
        actual: u64,
    },
    /// The data written does not hash to the committed or expected digest.
    #[error("ref {reference:?}: digest mismatch: expected {expected}, actual {actual}")]
    DigestMismatch {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    /// A write that would leave a gap or overwrite written data.
    #[error(
        "ref {reference:?}: write at offset {offset} refused: the ingest is at offset {current} \
         (writes must continue exactly where the data ends)"
    )]
    Offset {
        reference: String,
        offset: u64,
        current: u64,
    },
    /// Reopening a ref with an expectation different from the one it was started with.
    #[error("ref {reference:?}: expected {requested:?} differs from the ingest's {stored:?}")]
    ExpectedChanged {
        reference: String,
        requested: (Digest, u64),
        stored: (Digest, u64),
    },
    /// A ranged read starting past the end of the blob.
    #[error("{digest}: read at offset {offset} is past the end ({size} bytes)")]
    Range {
        digest: Digest,
        offset: u64,
        size: u64,
    },
    /// Refs are used as keys; an empty one is a caller bug.
    #[error("empty ingest ref")]
    EmptyRef,
    /// An ingest file the store wrote holds something it cannot read back.
    #[error("corrupt ingest file {}: {reason}", path.display())]
    CorruptIngest { path: PathBuf, reason: String },
}

/// Result alias for the content store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }
}

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::NotFound { .. } => Kind::NotFound,
            Self::AlreadyExists { .. } => Kind::AlreadyExists,
            Self::InvalidArgument(_) => Kind::InvalidArgument,
            Self::Locked { .. } => Kind::Unavailable,
            Self::Io { .. } => Kind::Internal,
        }
    }
}

impl From<DigestError> for Error {
    fn from(e: DigestError) -> Self {
        Self::InvalidArgument(e.into())
    }
}
