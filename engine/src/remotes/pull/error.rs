//! The errors of a pull, in their errdefs classes: a bad reference or platform is the
//! caller's, an unreachable registry is unavailable, an image berth cannot use or unpack (or
//! unreadable registry settings) is a precondition of the node's.

use berth_api::errdefs::{Classify, Kind};

use super::super::auth::AuthError;
use super::super::client::ClientError;
use super::super::config::RegistryConfigError;

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    Reference {
        /// What was given.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The registry could not deliver something (names each endpoint tried).
    #[error("{reference}")]
    Fetch {
        /// The image reference.
        reference: String,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The registry's documents do not form an image berth can use.
    #[error("{reference}: {what}")]
    Image {
        /// The image reference.
        reference: String,
        /// What was wrong.
        what: String,
    },
    /// The content store or the metadata database failed.
    #[error("{reference}: {what}")]
    Storage {
        /// The image reference.
        reference: String,
        /// What was being done, with the cause.
        what: String,
    },
    /// The platform asked for does not parse.
    #[error("{0}")]
    Platform(String),
    /// The registry settings (hosts, credentials) cannot be read for this pull.
    #[error(transparent)]
    Config(#[from] RegistryConfigError),
    /// A credentials file cannot be read.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// Unpacking failed.
    #[error("{reference}: unpack")]
    Unpack {
        /// The image reference.
        reference: String,
        /// Why.
        #[source]
        source: crate::unpack::UnpackError,
    },
}

impl Classify for PullError {
    fn kind(&self) -> Kind {
        match self {
            PullError::Reference { .. } | PullError::Platform(_) => Kind::InvalidArgument,
            // kubelet tells "image not found" from "registry unreachable" by the code.
            PullError::Fetch { source, .. } if source.manifest_not_found() => Kind::NotFound,
            PullError::Fetch { .. } => Kind::Unavailable,
            PullError::Image { .. }
            | PullError::Unpack { .. }
            | PullError::Config(_)
            | PullError::Credentials(_) => Kind::FailedPrecondition,
            PullError::Storage { .. } => Kind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(reason: &str) -> ClientError {
        ClientError::Attempt {
            url: "https://r/v2/a/manifests/t".into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_manifest_no_endpoint_has_is_not_found() {
        let fetch = |what: &str, attempts| PullError::Fetch {
            reference: "r/a:t".into(),
            source: ClientError::AllFailed {
                what: what.into(),
                attempts,
            },
        };
        let all_404 = fetch(
            "manifest a:t",
            vec![attempt("404 Not Found"), attempt("404 Not Found")],
        );
        assert_eq!(all_404.kind(), Kind::NotFound);
        let one_down = fetch(
            "manifest a:t",
            vec![
                attempt("404 Not Found"),
                attempt("cannot connect to r: refused"),
            ],
        );
        assert_eq!(one_down.kind(), Kind::Unavailable);
        let blob = fetch("blob sha256:00", vec![attempt("404 Not Found")]);
        assert_eq!(blob.kind(), Kind::Unavailable);
        assert_eq!(fetch("manifest a:t", vec![]).kind(), Kind::Unavailable);
    }
}
