//! berth-cri's errors, and the ONE place they become gRPC statuses ([`Error::code`], used by
//! `impl From<Error> for tonic::Status`).
//!
//! berthd's own errors arrive as ttrpc statuses whose class (berth-api's errdefs) carries over
//! to the gRPC code of the same name: a NOT_FOUND image stays NOT_FOUND for kubelet.

use berth_api::client::ClientError;
use berth_api::errdefs::Kind;

/// Anything a CRI call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to berthd failed (its class decides the code).
    #[error(transparent)]
    Berthd(#[from] ClientError),
    /// The object the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// The name is taken (a sandbox name reserved by another sandbox or an in-flight
    /// RunPodSandbox).
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the state forbids it now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Not implemented by berth-cri.
    #[error("{0}")]
    Unimplemented(String),
    /// The request's own time ran out (ExecSync's timeout).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// A CNI plugin failed.
    #[error("CNI {command} of network {network:?} failed in plugin {plugin:?}: {message}")]
    Cni {
        command: &'static str,
        network: String,
        plugin: String,
        message: String,
    },
    /// A local system call or file operation failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Stored data of berthd's (an image manifest, a sandbox record) cannot be read.
    #[error("{0}")]
    Corrupt(String),
}

/// The gRPC code of an errdefs class.
fn code_of_kind(k: Kind) -> tonic::Code {
    use tonic::Code;
    match k {
        Kind::NotFound => Code::NotFound,
        Kind::AlreadyExists => Code::AlreadyExists,
        Kind::InvalidArgument => Code::InvalidArgument,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::Unavailable => Code::Unavailable,
        Kind::PermissionDenied => Code::PermissionDenied,
        Kind::ResourceExhausted => Code::ResourceExhausted,
        Kind::Unimplemented => Code::Unimplemented,
        Kind::DataLoss => Code::DataLoss,
        Kind::Aborted => Code::Aborted,
        Kind::DeadlineExceeded => Code::DeadlineExceeded,
        Kind::Canceled => Code::Cancelled,
        Kind::Internal => Code::Internal,
    }
}

impl Error {
    /// The class of a berthd error (None for berth-cri's own errors).
    pub fn berthd_kind(&self) -> Option<Kind> {
        match self {
            Error::Berthd(ClientError::Call { source, .. }) => Some(Kind::of_error(source)),
            Error::Berthd(ClientError::Timeout { .. }) => Some(Kind::DeadlineExceeded),
            Error::Berthd(_) => Some(Kind::Unavailable),
            _ => None,
        }
    }

    /// Whether this is berthd saying NOT_FOUND.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_)) || self.berthd_kind() == Some(Kind::NotFound)
    }

    /// The gRPC code kubelet sees.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::Berthd(_) => code_of_kind(self.berthd_kind().unwrap_or(Kind::Internal)),
            Error::NotFound(_) => Code::NotFound,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Cni { .. } => Code::Unknown,
            Error::Io { .. } => Code::Internal,
            Error::Corrupt(_) => Code::DataLoss,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.code(), berth_api::errdefs::chain(&e))
    }
}

/// Result of berth-cri's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn berthd_classes_keep_their_code() {
        let e = Error::Berthd(ClientError::Call {
            address: "unix:///x".into(),
            method: "Images.Get",
            source: berth_api::errdefs::to_ttrpc(Kind::NotFound, "image \"x\""),
        });
        assert!(e.is_not_found());
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s.message().contains("image \"x\""), "{}", s.message());
        let e = Error::Berthd(ClientError::Connect {
            address: "unix:///x".into(),
            source: ttrpc::Error::Others("refused".into()),
        });
        assert_eq!(e.code(), tonic::Code::Unavailable);
        assert_eq!(
            tonic::Status::from(Error::AlreadyExists("name".into())).code(),
            tonic::Code::AlreadyExists
        );
    }
}
