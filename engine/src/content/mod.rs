//! The content store: immutable blobs addressed by digest, and resumable ingests that become
//! blobs once their size and digest are verified.
//!
//! The interface is split the way containerd's `core/content/content.go` splits it, so each
//! consumer asks only for what it uses: [`Provider`] reads, [`Ingester`] writes, [`Manager`]
//! inspects and deletes blobs, [`IngestManager`] inspects and aborts ingests; [`Store`] is all
//! four. [`LocalStore`] is the implementation on a local filesystem, under `<root>/content`:
//!
//! ```text
//! content/blobs/sha256/<hex>           committed blobs, read-only (0444)
//! content/ingest/<sha256(ref)>/data    bytes written so far
//!                              ref     the ref, to list ingests by name
//!                              expected  "<digest> <size>" when the writer gave them
//!                              startedat, updatedat  unix nanoseconds
//!                              lock    flock(2) target held by the open writer
//! ```
//!
//! Vocabulary (containerd's): a *ref* names an ingest chosen by the client (e.g.
//! `layer-sha256:…`), so a pull interrupted by a crash or a dropped connection resumes at the
//! ingest's offset instead of starting over. *Commit* turns an ingest into a blob.
//!
//! Labels and namespaces are not here: they belong to the metadata database ([`crate::metadata`]).

mod digest;
mod error;
mod local;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

use std::time::SystemTime;

pub use digest::{Digest, DigestError};
pub use error::{Error, Invalid, Result};
pub use local::LocalStore;
pub use reader::ReaderAt;
pub use writer::Writer;

/// What the store knows about a committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub digest: Digest,
    pub size: u64,
    /// When the blob was committed (file birth time, or its mtime where the filesystem does
    /// not record birth).
    pub created_at: SystemTime,
    /// Last change of the blob file (blobs are immutable, so normally equal to `created_at`).
    pub updated_at: SystemTime,
}

/// The state of an ingest, as [`Writer::status`] and [`IngestManager::status`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub reference: String,
    /// Bytes written so far; the next write must start here.
    pub offset: u64,
    /// The expected size, when the writer gave one (0 otherwise, as in containerd).
    pub total: u64,
    /// The expected digest, when the writer gave one.
    pub expected: Option<Digest>,
    pub started_at: SystemTime,
    pub updated_at: SystemTime,
}

/// Reads committed blobs.
pub trait Provider {
    /// Opens a blob for positional (ranged) reads.
    fn reader_at(&self, digest: &Digest) -> Result<ReaderAt>;
}

/// Writes new content.
pub trait Ingester {
    /// Opens (or resumes) the ingest named `reference`. `expected` is the digest and size the
    /// client announces; they are checked again at commit. Fails with [`Error::Locked`] while
    /// another writer holds the same ref.
    fn writer(&self, reference: &str, expected: Option<(Digest, u64)>) -> Result<Writer>;
}

/// Inspects and removes committed blobs.
pub trait Manager {
    fn info(&self, digest: &Digest) -> Result<Info>;
    /// All blobs, in digest order.
    fn list(&self) -> Result<Vec<Info>>;
    fn delete(&self, digest: &Digest) -> Result<()>;
}

/// Inspects and removes ingests in progress.
pub trait IngestManager {
    fn status(&self, reference: &str) -> Result<Status>;
    /// All ingests, in ref order.
    fn list_statuses(&self) -> Result<Vec<Status>>;
    /// Discards an ingest. Fails with [`Error::Locked`] while a writer holds it.
    fn abort(&self, reference: &str) -> Result<()>;
}

/// A complete content store.
pub trait Store: Provider + Ingester + Manager + IngestManager {}

impl<T: Provider + Ingester + Manager + IngestManager> Store for T {}
