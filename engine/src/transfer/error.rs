//! Errors of import, export and image views, each in its errdefs class: a bad archive or
//! request is the caller's (invalid argument), a stored image that cannot be resolved,
//! unpacked or exported is a precondition of the node's (failed precondition).

use berth_api::errdefs::{Classify, Kind};

use crate::content::DigestError;

/// A transfer error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong (no names, no key, a bad platform).
    #[error("{0}")]
    InvalidArgument(String),
    /// The archive could not be imported.
    #[error("import")]
    Import(#[source] crate::images::import::ImportError),
    /// A descriptor of the archive carries a bad digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// An image of the archive does not resolve to a manifest for the platform.
    #[error("{name}")]
    BadImage {
        name: String,
        #[source]
        source: crate::images::Error,
    },
    /// A stored image does not resolve to a manifest for the platform.
    #[error("{name}")]
    Unresolvable {
        name: String,
        #[source]
        source: crate::images::Error,
    },
    /// Unpacking an image's layers failed.
    #[error("{name}: unpack")]
    Unpack {
        name: String,
        #[source]
        source: crate::unpack::UnpackError,
    },
    /// The snapshotter asked for is not loaded.
    #[error("snapshotter {0:?} is not loaded")]
    SnapshotterNotLoaded(String),
    /// The view snapshot could not be made (the snapshotter's own line, its class kept).
    #[error("view {key}: {error}")]
    View {
        key: String,
        error: Box<crate::snapshots::Error>,
    },
    /// Writing the export archive failed.
    #[error("export: {0}")]
    Export(String),
    /// The metadata database refused or failed.
    #[error(transparent)]
    Metadata(#[from] crate::metadata::Error),
}

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Error::InvalidArgument(_)
            | Error::Import(_)
            | Error::Digest(_)
            | Error::BadImage { .. }
            | Error::SnapshotterNotLoaded(_) => Kind::InvalidArgument,
            Error::Unresolvable { .. } | Error::Unpack { .. } | Error::Export(_) => {
                Kind::FailedPrecondition
            }
            Error::View { error, .. } => error.kind(),
            Error::Metadata(e) => e.kind(),
        }
    }
}
