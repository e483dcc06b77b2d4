//! Unpacking an image into a snapshotter: the join of the content store, the metadata
//! database, the layer applier ([`crate::archive`]) and a [`Snapshotter`].
//!
//! containerd's model: each layer becomes a committed snapshot named by its **chain ID**
//! (the identity of the filesystem after that layer and all below it), so images sharing
//! lower layers share their snapshots and a second unpack only applies what is new. For each
//! layer, base first:
//!
//! 1. if the committed snapshot exists already, reuse it;
//! 2. else `prepare` an active snapshot on the parent under a unique temporary key, apply the
//!    layer into it (overlay mode on an overlay upper directory, in-place mode on a bind
//!    mount or a mounted snapshot), `commit` it under the chain ID, and record it in the
//!    metadata database — the backend snapshot first, then its record, with the database's
//!    resource guard held so a concurrent GC cannot sweep it in between;
//! 3. on any failure, remove the active snapshot: nothing half-applied is ever committed.
//!
//! Finally the image's config record gets the label
//! `containerd.io/gc.ref.snapshot.<snapshotter> = <top chain ID>` so GC keeps the chain as long
//! as the image exists. Backend snapshot names are `<namespace>/<chain ID>`, the mapping the
//! Snapshots service uses, so `berthctl snapshots ls` shows them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::archive::{self, ApplyOptions, ApplyStats, LayerRef};
use crate::content::{Digest, LocalStore, Provider, ReaderAt};
use crate::images::{self, ResolvedImage};
use crate::metadata::Db;
use crate::metadata::SnapshotRecord;
use crate::snapshots::{Kind, Labels, Mount, Snapshotter};

/// Label containerd puts on snapshots created by unpacking, naming the chain ID.
pub const LABEL_SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";

/// Errors unpacking an image.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The snapshotter refused an operation.
    #[error("snapshotter {snapshotter}: {op} {key}")]
    Snapshot {
        /// Snapshotter name.
        snapshotter: String,
        /// What was attempted.
        op: &'static str,
        /// The snapshot key.
        key: String,
        /// Why.
        #[source]
        source: Box<crate::snapshots::Error>,
    },
    /// Reading the layer blob failed.
    #[error("layer {digest}: cannot read the blob")]
    Blob {
        /// The layer.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<crate::content::Error>,
    },
    /// Applying the layer failed (the error names the entry).
    #[error("layer {digest} (layer {index} of {count})")]
    Apply {
        /// The layer.
        digest: Digest,
        /// 1-based position, base first.
        index: usize,
        /// Number of layers.
        count: usize,
        /// Why.
        #[source]
        source: Box<archive::Error>,
    },
    /// The snapshot's mounts are not something the unpacker knows how to write into.
    #[error("snapshotter {snapshotter}: cannot unpack into mounts {mounts:?}: {reason}")]
    Mounts {
        /// Snapshotter name.
        snapshotter: String,
        /// The mounts.
        mounts: Vec<Mount>,
        /// Why.
        reason: String,
    },
    /// Recording the result failed.
    #[error("recording the unpacked snapshots")]
    Metadata(#[source] Box<crate::metadata::Error>),
}

/// What an unpack did.
#[derive(Debug, Clone, Default)]
pub struct Unpacked {
    /// The image's top chain ID (its snapshot), `None` for an image without layers.
    pub chain_id: Option<Digest>,
    /// Layers applied now.
    pub applied: usize,
    /// Layers whose snapshot existed already.
    pub reused: usize,
    /// Sum of the applied layers' statistics.
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Wall time in milliseconds.
    pub millis: u128,
}

/// Removes active snapshots left by unpacks that a crash interrupted (keys
/// `<ns>/extract-…`): after a restart nothing owns them, and a half-applied layer must not
/// stay visible. Returns the keys removed; errors are returned per key and do not stop the
/// rest.
pub fn remove_leftovers(sn: &dyn Snapshotter) -> (Vec<String>, Vec<String>) {
    let mut leftovers = Vec::new();
    let _ = sn.walk(&[], &mut |info| {
        if info.kind == Kind::Active && info.name.contains("/extract-") {
            leftovers.push(info.name.clone());
        }
        Ok(())
    });
    let mut removed = Vec::new();
    let mut errors = Vec::new();
    for key in leftovers {
        match sn.remove(&key) {
            Ok(()) => removed.push(key),
            Err(e) => errors.push(format!("{key}: {e}")),
        }
    }
    (removed, errors)
}

/// The backend name of a namespace's committed snapshot for `chain_id`.
pub fn backend_name(ns: &str, chain_id: &Digest) -> String {
    format!("{ns}/{chain_id}")
}

/// Unpacks `image` (resolved for one platform) from `store` into snapshotter `sn` (named
/// `snapshotter` in records and labels) for namespace `ns`.
///
/// `lease`, when given, is a lease in `ns` that each new snapshot record is added to before
/// it is written, so a collection running before the image's GC label is set cannot take
/// the chain.
pub fn unpack(
    db: &Db,
    store: &LocalStore,
    ns: &str,
    snapshotter: &str,
    sn: &dyn Snapshotter,
    image: &ResolvedImage,
    lease: Option<&str>,
) -> Result<Unpacked, UnpackError> {
    let started = Instant::now();
    let mut out = Unpacked::default();
    let count = image.layers.len();
    let mut parent: Option<Digest> = None;
    for (i, layer) in image.layers.iter().enumerate() {
        let name = backend_name(ns, &layer.chain_id);
        let exists = matches!(sn.stat(&name), Ok(info) if info.kind == Kind::Committed);
        if exists {
            out.reused += 1;
        } else {
            let stats = apply_one(
                db,
                store,
                ns,
                snapshotter,
                sn,
                layer,
                parent.as_ref(),
                i + 1,
                count,
                lease,
            )?;
            match stats {
                Some(stats) => {
                    out.applied += 1;
                    out.entries += stats.entries;
                    out.bytes += stats.bytes;
                }
                None => out.reused += 1,
            }
        }
        ensure_record(db, ns, snapshotter, &layer.chain_id, parent.as_ref(), lease)?;
        parent = Some(layer.chain_id);
    }
    out.chain_id = image.top_chain_id();
    if let Some(top) = out.chain_id {
        let (key, value) = images::gc_snapshot_label(snapshotter, &top);
        let config =
            images::descriptor_digest(&image.config_descriptor, "the image").map_err(|e| {
                UnpackError::Metadata(Box::new(crate::metadata::Error::InvalidArgument(
                    e.to_string(),
                )))
            })?;
        let size = image.config_descriptor.size();
        db.content()
            .put_record(ns, config, size, [(key, value)].into_iter().collect())
            .map_err(|e| UnpackError::Metadata(Box::new(e)))?;
    }
    out.millis = started.elapsed().as_millis();
    Ok(out)
}

/// Applies one layer into a new committed snapshot. `Ok(None)` when a concurrent unpack
/// committed the same chain ID first.
#[allow(clippy::too_many_arguments)]
fn apply_one(
    db: &Db,
    store: &LocalStore,
    ns: &str,
    snapshotter: &str,
    sn: &dyn Snapshotter,
    layer: &images::Layer,
    parent: Option<&Digest>,
    index: usize,
    count: usize,
    lease: Option<&str>,
) -> Result<Option<ApplyStats>, UnpackError> {
    let snap_err = |op: &'static str, key: &str| {
        let key = key.to_string();
        let snapshotter = snapshotter.to_string();
        move |source| UnpackError::Snapshot {
            snapshotter,
            op,
            key,
            source: Box::new(source),
        }
    };
    let name = backend_name(ns, &layer.chain_id);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let key = format!("{ns}/extract-{nanos}-{}", &layer.chain_id.encoded()[..12]);
    let parent_name = parent.map(|p| backend_name(ns, p)).unwrap_or_default();
    let labels: Labels = [(LABEL_SNAPSHOT_REF.to_string(), layer.chain_id.to_string())]
        .into_iter()
        .collect();

    // Held from before the backend snapshot exists until its record is committed.
    let _guard = db.resource_guard();
    let mounts = sn
        .prepare(&key, &parent_name, labels.clone())
        .map_err(snap_err("prepare", &key))?;
    let result = write_layer(store, snapshotter, &key, &mounts, layer, index, count);
    let stats = match result {
        Ok(stats) => stats,
        Err(err) => {
            let _ = sn.remove(&key);
            return Err(err);
        }
    };
    crate::failpoint::hit("unpack.layer.before_commit");
    match sn.commit(&name, &key, labels) {
        Ok(()) => {}
        Err(crate::snapshots::Error::AlreadyExists { .. }) => {
            let _ = sn.remove(&key);
            return Ok(None);
        }
        Err(source) => {
            let _ = sn.remove(&key);
            return Err(snap_err("commit", &name)(source));
        }
    }
    ensure_record(db, ns, snapshotter, &layer.chain_id, parent, lease)?;
    Ok(Some(stats))
}

/// Records the committed snapshot in the metadata database unless it is recorded already.
fn ensure_record(
    db: &Db,
    ns: &str,
    snapshotter: &str,
    chain_id: &Digest,
    parent: Option<&Digest>,
    lease: Option<&str>,
) -> Result<(), UnpackError> {
    let key = chain_id.to_string();
    if let Some(lease) = lease {
        let resource = crate::metadata::LeaseResource::Snapshot {
            snapshotter: snapshotter.into(),
            key: key.clone(),
        };
        db.leases()
            .add_resource(ns, lease, &resource)
            .map_err(|e| UnpackError::Metadata(Box::new(e)))?;
    }
    if db.snapshots().get(ns, snapshotter, &key).is_ok() {
        return Ok(());
    }
    let rec = SnapshotRecord::new(
        snapshotter,
        key,
        backend_name(ns, chain_id),
        parent.map(|p| p.to_string()),
        [(LABEL_SNAPSHOT_REF.to_string(), chain_id.to_string())]
            .into_iter()
            .collect(),
    );
    match db.snapshots().create(ns, rec) {
        Ok(_) | Err(crate::metadata::Error::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(UnpackError::Metadata(Box::new(err))),
    }
}

/// Where to write a layer for a snapshot with these mounts, and in which mode.
fn plan_target(mounts: &[Mount]) -> Result<(PathBuf, ApplyOptions), String> {
    let [mount] = mounts else {
        return Err(format!("{} mounts, expected one", mounts.len()));
    };
    let option = |name: &str| {
        mount
            .options
            .iter()
            .find_map(|o| o.strip_prefix(name))
            .map(str::to_string)
    };
    match mount.fs_type.as_str() {
        "bind" | "rbind" => Ok((PathBuf::from(&mount.source), ApplyOptions::in_place())),
        "overlay" => {
            let upper = option("upperdir=").ok_or("overlay mount without upperdir")?;
            let lowers = option("lowerdir=")
                .map(|l| l.split(':').map(PathBuf::from).collect())
                .unwrap_or_default();
            Ok((PathBuf::from(upper), ApplyOptions::overlay(lowers)))
        }
        other => Err(format!("mount type {other} (not bind or overlay)")),
    }
}

fn write_layer(
    store: &LocalStore,
    snapshotter: &str,
    key: &str,
    mounts: &[Mount],
    layer: &images::Layer,
    index: usize,
    count: usize,
) -> Result<ApplyStats, UnpackError> {
    let blob = store
        .reader_at(&layer.digest)
        .map_err(|source| UnpackError::Blob {
            digest: layer.digest,
            source: Box::new(source),
        })?;
    let layer_ref = LayerRef {
        digest: layer.digest,
        size: layer.size,
        media_type: layer.media_type.clone(),
        diff_id: Some(layer.diff_id),
    };
    let apply = |target: &Path, opts: &ApplyOptions| {
        archive::apply_layer(
            target,
            SequentialReader {
                inner: &blob,
                offset: 0,
            },
            &layer_ref,
            opts,
        )
        .map_err(|source| UnpackError::Apply {
            digest: layer.digest,
            index,
            count,
            source: Box::new(source),
        })
    };
    match plan_target(mounts) {
        Ok((target, opts)) => {
            let stats = apply(&target, &opts)?;
            // commit makes the snapshot immutable and durable in the snapshotter's metadata,
            // not its files: flush them before it (a crash must not leave a committed layer
            // with missing data).
            sync_dir(&target);
            Ok(stats)
        }
        Err(reason) if mounts.len() == 1 => {
            // Another filesystem type (a ZFS dataset, a block device): mount it and write in
            // place.
            let _ = reason;
            let dir = std::env::temp_dir().join(format!("berth-unpack-{}", key.replace('/', "_")));
            let mounts_err = |reason: String| UnpackError::Mounts {
                snapshotter: snapshotter.into(),
                mounts: mounts.to_vec(),
                reason,
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| mounts_err(format!("cannot create {}: {e}", dir.display())))?;
            if let Err(e) = berth_api::mount::mount_all(mounts, &dir) {
                let _ = std::fs::remove_dir(&dir);
                return Err(mounts_err(format!("cannot mount {key}: {e}")));
            }
            let result = apply(&dir, &ApplyOptions::in_place());
            sync_dir(&dir);
            let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&dir);
            result
        }
        Err(reason) => Err(UnpackError::Mounts {
            snapshotter: snapshotter.into(),
            mounts: mounts.to_vec(),
            reason,
        }),
    }
}

/// `syncfs(2)` of the filesystem holding `dir` (best effort: a failure shows up as a
/// missing file after a crash, which the next unpack repairs by re-applying).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f));
    }
}

/// `Read` over a [`ReaderAt`] from its start.
struct SequentialReader<'a> {
    inner: &'a ReaderAt,
    offset: u64,
}

impl Read for SequentialReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self
            .inner
            .read_at(buf, self.offset)
            .map_err(std::io::Error::other)?;
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(fs_type: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            fs_type: fs_type.into(),
            source: source.into(),
            target: None,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn targets_follow_the_mounts() {
        let (dir, opts) = plan_target(&[mount("bind", "/s/1/fs", &["rw", "rbind"])]).unwrap();
        assert_eq!(dir, PathBuf::from("/s/1/fs"));
        assert_eq!(opts, ApplyOptions::in_place());
        let (dir, opts) = plan_target(&[mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/s/3/work",
                "upperdir=/s/3/fs",
                "lowerdir=/s/2/fs:/s/1/fs",
            ],
        )])
        .unwrap();
        assert_eq!(dir, PathBuf::from("/s/3/fs"));
        assert_eq!(
            opts,
            ApplyOptions::overlay(vec!["/s/2/fs".into(), "/s/1/fs".into()])
        );
        assert!(plan_target(&[]).is_err());
        assert!(plan_target(&[mount("zfs", "pool/berth/7", &[])]).is_err());
    }
}
