//! The metadata database's errors.
//!
//! Variants follow containerd's errdefs classes ([`Classify`]), so a service maps each to one
//! precise status at its edge (`berth_api::errdefs::status`); only a failure of the database
//! itself is [`Kind::Internal`].

use std::path::PathBuf;

use berth_api::errdefs::{Classify, Kind};

/// A metadata error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The named object does not exist (in the namespace asked about).
    #[error("{what} not found")]
    NotFound { what: String },
    /// An object with this name already exists.
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// The request is malformed: a bad name, label or field; the message says which.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is well-formed but the state forbids it (e.g. deleting a namespace that
    /// still holds objects); the message says what stands in the way.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The file was written by a newer berthd with a schema this binary does not know. It is
    /// refused, never rewritten: an A/B rollback to an older image must not destroy the
    /// newer image's state.
    #[error(
        "metadata database {}: schema version {found} is newer than this berthd supports \
         (version {supported}) and needs version {write_compat} or later to write it, and no \
         copy saved before its migration ({}) exists to roll back to; refusing to open it \
         (it was left unchanged)",
        path.display(), saved.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u64,
        /// The oldest version that may write the file.
        write_compat: u64,
        supported: u64,
        /// Where a copy saved before the file's migration would have been.
        saved: PathBuf,
    },
    /// The file holds something this binary cannot read as its schema.
    #[error("metadata database {}: {reason}", path.display())]
    BadSchema { path: PathBuf, reason: String },
    /// A stored record could not be decoded.
    #[error("metadata database: corrupt record {key} in table {table}")]
    Corrupt {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The database engine failed (I/O, locking, corruption detected by redb).
    #[error("metadata database {}: {op}", path.display())]
    Database {
        path: PathBuf,
        op: String,
        #[source]
        source: Box<redb::Error>,
    },
    /// A database failure inside a transaction, before the path and operation are attached
    /// by the transaction helper (never returned from the public API).
    #[error("metadata database storage")]
    Storage(#[source] Box<redb::Error>),
    /// The content store failed while reconciling or collecting.
    #[error("content store")]
    Content(#[source] crate::content::Error),
}

/// Result alias for the metadata database.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::NotFound { .. } => Kind::NotFound,
            Self::AlreadyExists { .. } => Kind::AlreadyExists,
            Self::InvalidArgument(_) => Kind::InvalidArgument,
            Self::FailedPrecondition(_) | Self::SchemaTooNew { .. } => Kind::FailedPrecondition,
            Self::BadSchema { .. } | Self::Corrupt { .. } => Kind::DataLoss,
            Self::Database { .. } | Self::Storage(_) => Kind::Internal,
            Self::Content(e) => e.kind(),
        }
    }
}

impl Error {
    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    pub(crate) fn exists(what: impl Into<String>) -> Self {
        Self::AlreadyExists { what: what.into() }
    }

    /// Attaches the file and operation to a bare storage error.
    pub(crate) fn in_db(self, path: &std::path::Path, op: &str) -> Self {
        match self {
            Self::Storage(source) => Self::Database {
                path: path.to_path_buf(),
                op: op.to_owned(),
                source,
            },
            other => other,
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Self::Storage(Box::new(e.into()))
            }
        }
    )*};
}
storage_from!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

impl From<crate::content::Error> for Error {
    fn from(e: crate::content::Error) -> Self {
        Self::Content(e)
    }
}
