//! Snapshotters: the filesystems containers run on, with containerd's semantics.
//!
//! A [`Snapshotter`] hands out directory trees built as a stack of layers. The vocabulary and
//! lifecycle are containerd's (`core/snapshots/snapshotter.go`), so clients written against
//! containerd's model (unpackers, the future container service, `berthctl snapshots`) need no
//! translation:
//!
//! * A **key** names a snapshot that is not committed yet: an *active* snapshot (writable,
//!   created by [`Snapshotter::prepare`]) or a *view* (read-only, created by
//!   [`Snapshotter::view`]). Keys are chosen by the caller and live in the same namespace as
//!   names; a key cannot be reused while its snapshot exists.
//! * A **name** names a *committed* snapshot: [`Snapshotter::commit`] turns the active snapshot
//!   `key` into the immutable committed snapshot `name`; the key stops existing. Only committed
//!   snapshots can be parents.
//! * A **parent** is the committed snapshot a new snapshot starts from. An empty parent (`""`)
//!   means an empty tree. Parents form chains; a chain is what an image's layers become.
//! * **Mounts** are what a caller mounts to see a snapshot's tree: a list of [`Mount`]s to apply
//!   in order on one target. The snapshotter never mounts anything itself; it only describes.
//!
//! The usual life of a layer during unpack: `prepare(tmp-key, parent)` → mount → apply the
//! layer's changes → unmount → `commit(chain-id, tmp-key)`. A container gets
//! `prepare(container-id, image-top-chain-id)` and keeps it active for its lifetime; a
//! read-only inspection gets `view(key, name)`. [`Snapshotter::remove`] deletes any snapshot,
//! but is refused ([`Error::FailedPrecondition`]) while other snapshots have it as parent, so a
//! chain is removed from the top down.
//!
//! Implementations: [`overlay::Overlay`] (default, kernel overlayfs) and [`native::Native`]
//! (copies the parent; works on any filesystem). Both keep their records in one transactional
//! [`metastore::MetaStore`], shared with the `zfs` snapshotter. [`testsuite`] is the
//! conformance suite every implementation must pass; `berth_api::mount` mounts what a
//! snapshotter returns. [`set`] holds the snapshotters berthd loaded, and [`namespaced`] is
//! the core of the Snapshots service: one snapshotter as a namespace sees it.
//!
//! The methods are synchronous on purpose: they do filesystem work (copies, directory walks,
//! and for ZFS, calls to `zfs`), so berthd calls them through `spawn_blocking`. Implementations
//! are `Send + Sync` and safe to call concurrently.

mod error;
pub mod filter;
mod fsutil;
mod local;
pub mod metastore;
pub mod namespaced;
pub mod native;
pub mod overlay;
pub mod set;
pub mod sweeper;
#[cfg(feature = "conformance")]
pub mod testsuite;
pub mod zfs;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

pub use error::{Error, Result};
pub use fsutil::{copy_tree, disk_usage};
pub use set::Snapshotters;

/// A snapshot's labels: free-form `key → value` metadata (containerd uses them for GC
/// references such as `containerd.io/gc.root`). Ordered so listings are stable.
pub type Labels = BTreeMap<String, String>;

/// The longest `key + value` a single label may have, in bytes (containerd's limit).
pub const MAX_LABEL_SIZE: usize = 4096;

/// What state a snapshot is in; decides which operations it allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A read-only snapshot of a parent, for looking at a tree without changing it. Cannot be
    /// committed or used as a parent.
    View,
    /// A writable snapshot, created by prepare. Can be committed; cannot be a parent.
    Active,
    /// An immutable snapshot, created by commit. The only kind that can be a parent.
    Committed,
}

impl Kind {
    /// containerd's spelling (`view`, `active`, `committed`), used in filters and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "view" => Ok(Kind::View),
            "active" => Ok(Kind::Active),
            "committed" => Ok(Kind::Committed),
            other => Err(Error::InvalidArgument {
                reason: format!(
                    "unknown snapshot kind {other:?}: expected view, active or committed"
                ),
            }),
        }
    }
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// View, active or committed.
    pub kind: Kind,
    /// The key (active, view) or name (committed).
    pub name: String,
    /// The parent's name, or `""` for a snapshot with no parent.
    pub parent: String,
    /// Free-form metadata, mutable through [`Snapshotter::update`].
    pub labels: Labels,
    /// When the record was made (for committed snapshots: the commit).
    pub created: SystemTime,
    /// Last change of the record (creation, commit, or label update).
    pub updated: SystemTime,
}

/// Disk space a snapshot uses on its own (not counting its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Bytes of allocated blocks (hardlinked files counted once).
    pub size: i64,
    /// Number of inodes (hardlinked files counted once).
    pub inodes: i64,
}

pub use berth_api::mount::Mount;

/// The snapshotter interface; see the module documentation for the vocabulary and lifecycle.
///
/// Errors are [`Error`]s whose variant says what went wrong in containerd's classes
/// (not found, already exists, failed precondition, invalid argument), so the Snapshots service
/// can map them to precise codes (`berth_api::errdefs::Classify`).
pub trait Snapshotter: Send + Sync {
    /// The record of the snapshot named or keyed `key`. `NotFound` when there is none.
    fn stat(&self, key: &str) -> Result<Info>;

    /// Changes the mutable fields of `info.name`'s record and returns the new record. Only
    /// labels are mutable. `fieldpaths` empty or `["labels"]` replaces all labels with
    /// `info.labels`; `labels.<k>` sets label `k` to `info.labels[k]`, or deletes it when
    /// `info.labels` has no `k`. Any other path (`parent`, `kind`, …) is `InvalidArgument`.
    /// Other fields of `info` are ignored.
    fn update(&self, info: &Info, fieldpaths: &[&str]) -> Result<Info>;

    /// Disk space used by the snapshot itself. For active snapshots this walks the writable
    /// layer now; for committed ones it is the figure recorded at commit.
    fn usage(&self, key: &str) -> Result<Usage>;

    /// The mounts for an active snapshot or view (again: the same as prepare/view returned).
    /// Committed snapshots have no mounts: make a view of them.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// Creates the active snapshot `key` on top of the committed snapshot `parent` (`""`: none)
    /// and returns its mounts. `AlreadyExists` when `key` is taken, `NotFound` when the parent
    /// does not exist, `InvalidArgument` when the parent is not committed.
    fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Like [`prepare`](Self::prepare) but creates a read-only view.
    fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>>;

    /// Turns the active snapshot `key` into the committed snapshot `name`, with `labels` as its
    /// labels; `key` no longer exists afterwards. The caller must have unmounted `key`.
    /// `NotFound` for an unknown key, `FailedPrecondition` when `key` is not active,
    /// `AlreadyExists` when `name` is taken.
    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()>;

    /// Removes the snapshot `key` (of any kind) and its data. `FailedPrecondition` while other
    /// snapshots have it as parent; `NotFound` when it does not exist. Callers must have
    /// unmounted it.
    fn remove(&self, key: &str) -> Result<()>;

    /// Calls `f` for each snapshot matching `filters` (containerd filter syntax: a snapshot
    /// matches when any filter matches; a filter is `,`-separated clauses that must all hold,
    /// e.g. `kind==active,labels."containerd.io/gc.root"`; see [`filter`]). Records are read in
    /// one transaction, then `f` is called outside it, so `f` may call back into the
    /// snapshotter. An error from `f` stops the walk and is returned.
    fn walk(&self, filters: &[&str], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()>;

    /// Removes leftovers of interrupted operations (temporary and half-removed directories,
    /// data with no record). Implementations also do this when opened; berthd may call it
    /// after a garbage collection.
    fn cleanup(&self) -> Result<()>;

    /// Releases the snapshotter's resources (its database). Later calls fail with
    /// [`Error::Closed`]; closing twice is not an error.
    fn close(&self) -> Result<()>;
}

/// Checks a set of labels against containerd's limits: non-empty keys, `key + value` at most
/// [`MAX_LABEL_SIZE`] bytes.
pub fn validate_labels(labels: &Labels) -> Result<()> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(Error::InvalidArgument {
                reason: "label key is empty".into(),
            });
        }
        if k.len() + v.len() > MAX_LABEL_SIZE {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "label {k:?}: key and value are {} bytes, more than the limit of {MAX_LABEL_SIZE}",
                    k.len() + v.len()
                ),
            });
        }
    }
    Ok(())
}
