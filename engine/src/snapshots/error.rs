//! The snapshotters' errors.
//!
//! Variants follow containerd's errdefs classes ([`Classify`]) so the Snapshots service maps
//! each to a precise status instead of a blanket INTERNAL, as containerd's
//! `plugins/services/snapshots/service.go` does.

use std::io;
use std::path::PathBuf;

use berth_api::errdefs::{Classify, Kind};

/// A snapshotter error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No snapshot with this key or name (or a parent that does not exist).
    #[error("snapshot {key:?} not found")]
    NotFound { key: String },
    /// The key or name is already used by another snapshot.
    #[error("snapshot {key:?} already exists")]
    AlreadyExists { key: String },
    /// The snapshot exists but is in a state that forbids the operation (removing a parent,
    /// committing a view).
    #[error("cannot {op} snapshot {key:?}: {reason}")]
    FailedPrecondition {
        op: &'static str,
        key: String,
        reason: String,
    },
    /// The request itself is wrong (empty key, immutable field path, bad filter, bad label).
    #[error("invalid argument: {reason}")]
    InvalidArgument { reason: String },
    /// No snapshotter of this id is loaded (containerd answers INVALID_ARGUMENT too).
    #[error("snapshotter {id:?} is not loaded (loaded: {})", loaded.join(", "))]
    NotLoaded { id: String, loaded: Vec<String> },
    /// The snapshotter was closed.
    #[error("snapshotter is closed")]
    Closed,
    /// The metadata database was written by a newer berth: refuse rather than rewrite it, so an
    /// A/B rollback to this binary cannot corrupt what the newer one wrote.
    #[error(
        "{}: schema version {found} is newer than this berth supports ({supported}); \
         run the berth release that created it, or remove the snapshotter root to start over",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// The metadata database failed.
    #[error("snapshot metadata {}: {op}", path.display())]
    Db {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    /// A stored record could not be decoded (database damaged or written by another program).
    #[error("snapshot metadata {}: record {key:?} is corrupt", path.display())]
    Corrupt {
        path: PathBuf,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A filesystem operation failed.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A mount operation failed.
    #[error(transparent)]
    Mount(#[from] berth_api::mount::Error),
    /// A `zfs` command failed (the zfs snapshotter).
    #[error(transparent)]
    Zfs(#[from] super::zfs::ZfsError),
}

/// Result with a snapshot [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::NotFound { .. } => Kind::NotFound,
            Error::AlreadyExists { .. } => Kind::AlreadyExists,
            Error::FailedPrecondition { .. } | Error::SchemaTooNew { .. } => {
                Kind::FailedPrecondition
            }
            Error::InvalidArgument { .. } | Error::NotLoaded { .. } => Kind::InvalidArgument,
            Error::Closed => Kind::Unavailable,
            Error::Corrupt { .. } => Kind::DataLoss,
            Error::Db { .. } | Error::Io { .. } | Error::Mount(_) | Error::Zfs(_) => Kind::Internal,
        }
    }
}

impl Error {
    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}
