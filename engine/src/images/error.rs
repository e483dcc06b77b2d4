//! Errors reading image documents (manifests, indexes, configs) from the content store.
//! Each names the digest of the document at fault and what was wrong with it.

use crate::content::{self, Digest, DigestError};

/// An image document could not be read, parsed or followed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the blob from the content store failed.
    #[error("read {what} {digest} from the content store")]
    Content {
        what: &'static str,
        digest: Digest,
        #[source]
        source: Box<content::Error>,
    },
    /// A referenced blob is not in the content store.
    #[error("{what} {digest} referenced by {parent} is missing from the content store")]
    Missing {
        what: &'static str,
        digest: Digest,
        /// The referencing document's digest, or where the reference came from.
        parent: String,
    },
    /// The JSON does not parse as the document it should be.
    #[error("{what} {digest} is not valid JSON for its type")]
    Parse {
        what: &'static str,
        digest: Digest,
        #[source]
        source: serde_json::Error,
    },
    /// The document parses but breaks a rule of the spec.
    #[error("{what} {digest}: {reason}")]
    Invalid {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    /// A descriptor carries a digest berth cannot use (not sha256, malformed).
    #[error("descriptor in {parent} has an unusable digest")]
    Digest {
        parent: String,
        #[source]
        source: DigestError,
    },
    /// The descriptor's media type is neither an index nor a manifest.
    #[error("{digest}: media type {media_type:?} is not an image manifest or index")]
    NotAnImage { digest: Digest, media_type: String },
    /// No manifest of the index matches the wanted platform.
    #[error("index {digest} has no manifest for {wanted} (it has: {available})")]
    NoMatchingPlatform {
        digest: Digest,
        wanted: String,
        available: String,
    },
    /// A platform string such as `linux/arm64/v8` could not be parsed.
    #[error("invalid platform {input:?}: expected os/arch[/variant]")]
    InvalidPlatform { input: String },
    /// Indexes nest deeper than any real image does (a loop, or an attack).
    #[error("index {digest}: indexes nested more than {max} deep")]
    TooDeep { digest: Digest, max: usize },
}

/// Result alias for image documents.
pub type Result<T, E = Error> = std::result::Result<T, E>;
