//! What the directory-based snapshotters (overlayfs, native) share: the layout
//! `<root>/metadata.redb` + `<root>/snapshots/<id>/`, and the crash-safe ordering of directory
//! work around metadata transactions (see [`super::metastore`]).
//!
//! ```text
//! <root>/metadata.redb        records (metastore::MetaStore)
//! <root>/snapshots/<id>/      one directory per snapshot, named by its id
//! <root>/snapshots/new-*      being built (removed at open if a crash left it)
//! <root>/snapshots/rm-*       being deleted (removed at open if a crash left it)
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::filter::Filter;
use super::metastore::{self, MetaStore, Snapshot};
use super::{Error, Info, Kind, Labels, Result, Usage};

const TEMP_PREFIX: &str = "new-";
const REMOVE_PREFIX: &str = "rm-";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The shared state of a directory-based snapshotter.
pub(crate) struct Local {
    root: PathBuf,
    store: RwLock<Option<Arc<MetaStore>>>,
}

fn remove_tree(p: &Path) -> Result<()> {
    match fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", p)(e)),
    }
}

impl Local {
    /// Opens (creating) the layout under `root` and removes leftovers of interrupted work.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).map_err(Error::io("create directory", &snaps))?;
        let store = MetaStore::open(&root.join(metastore::FILE_NAME))?;
        let local = Local {
            root: root.to_path_buf(),
            store: RwLock::new(Some(Arc::new(store))),
        };
        local.cleanup()?;
        Ok(local)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// The metadata store, or [`Error::Closed`].
    pub(crate) fn store(&self) -> Result<Arc<MetaStore>> {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Closed)
    }

    /// The directory of snapshot `id`.
    pub(crate) fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// Creates a snapshot: records it, lets `build` fill a temporary directory, renames the
    /// directory to the snapshot's id, and commits the record only once the directory is in
    /// place.
    pub(crate) fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
        build: impl FnOnce(&Path, &Snapshot) -> Result<()>,
    ) -> Result<Snapshot> {
        let store = self.store()?;
        let mut placed: Option<PathBuf> = None;
        let r = store.write(|tx| {
            let snap = tx.create(kind, key, parent, labels)?;
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .root
                .join("snapshots")
                .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
            fs::create_dir(&tmp).map_err(Error::io("create directory", &tmp))?;
            let built = build(&tmp, &snap).and_then(|()| {
                let dir = self.dir(snap.id);
                fs::rename(&tmp, &dir).map_err(Error::io("rename into place", &dir))?;
                placed = Some(dir);
                // The rename must be durable before the record is: a power cut must not leave
                // a committed record whose directory is still under its temporary name.
                let parent = self.root.join("snapshots");
                fs::File::open(&parent)
                    .and_then(|d| d.sync_all())
                    .map_err(Error::io("fsync directory", &parent))
            });
            if let Err(e) = built {
                // Best effort: whatever is left is removed at the next open.
                let _ = remove_tree(&tmp);
                return Err(e);
            }
            Ok(snap)
        });
        if r.is_err() {
            if let Some(dir) = placed {
                let _ = remove_tree(&dir);
            }
        }
        r
    }

    /// Commits the active `key` as `name`; `usage` measures the snapshot's directory.
    pub(crate) fn commit(
        &self,
        name: &str,
        key: &str,
        labels: Labels,
        usage: impl FnOnce(&Path) -> Result<Usage>,
    ) -> Result<()> {
        let store = self.store()?;
        store.write(|tx| {
            let snap = tx.snapshot(key)?;
            let u = if snap.kind == Kind::Active {
                usage(&self.dir(snap.id))?
            } else {
                Usage::default() // tx.commit refuses it with the precise reason
            };
            tx.commit(key, name, u, labels)
        })?;
        Ok(())
    }

    /// Removes `key`: the record first (committed), then its directory, renamed out of the way
    /// before deletion so a half-deleted tree never sits under an id.
    pub(crate) fn remove(&self, key: &str) -> Result<()> {
        let store = self.store()?;
        let (id, _) = store.write(|tx| tx.remove(key))?;
        let dir = self.dir(id);
        let gone = self
            .root
            .join("snapshots")
            .join(format!("{REMOVE_PREFIX}{id}"));
        match fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "snapshot removed; its directory stays until the next cleanup");
                return Ok(());
            }
        }
        if let Err(e) = remove_tree(&gone) {
            tracing::warn!(error = %e, "snapshot removed; its directory stays until the next cleanup");
        }
        Ok(())
    }

    /// Removes temporary directories, half-removed directories and directories with no record.
    /// Runs inside a write transaction so no create or remove interleaves with it.
    pub(crate) fn cleanup(&self) -> Result<()> {
        let store = self.store()?;
        let snaps = self.root.join("snapshots");
        store.write(|tx| {
            let ids = tx.ids()?;
            for e in fs::read_dir(&snaps).map_err(Error::io("read directory", &snaps))? {
                let e = e.map_err(Error::io("read directory", &snaps))?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                let orphan = match name.parse::<u64>() {
                    Ok(id) => !ids.contains(&id),
                    Err(_) => name.starts_with(TEMP_PREFIX) || name.starts_with(REMOVE_PREFIX),
                };
                if orphan {
                    tracing::info!(dir = %e.path().display(), "removing leftover snapshot directory");
                    remove_tree(&e.path())?;
                }
            }
            Ok(())
        })
    }

    pub(crate) fn stat(&self, key: &str) -> Result<Info> {
        self.store()?.read(|tx| tx.info(key))
    }

    pub(crate) fn update(&self, info: &Info, fieldpaths: &[&str]) -> Result<Info> {
        self.store()?.write(|tx| tx.update(info, fieldpaths))
    }

    pub(crate) fn snapshot(&self, key: &str) -> Result<Snapshot> {
        self.store()?.read(|tx| tx.snapshot(key))
    }

    /// Usage: the recorded figure for committed snapshots, `measure(dir)` for the others.
    pub(crate) fn usage(
        &self,
        key: &str,
        measure: impl FnOnce(&Path) -> Result<Usage>,
    ) -> Result<Usage> {
        let (snap, stored) = self.store()?.read(|tx| tx.usage(key))?;
        match stored {
            Some(u) if snap.kind == Kind::Committed => Ok(u),
            _ => measure(&self.dir(snap.id)),
        }
    }

    pub(crate) fn walk(
        &self,
        filters: &[&str],
        f: &mut dyn FnMut(&Info) -> Result<()>,
    ) -> Result<()> {
        let filter = Filter::parse(filters)?;
        let infos = self.store()?.read(|tx| tx.list(&filter))?;
        for i in &infos {
            f(i)?;
        }
        Ok(())
    }

    pub(crate) fn close(&self) -> Result<()> {
        self.store.write().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }
}

/// The [`Snapshotter`](super::Snapshotter) impl of a directory snapshotter: a type with a
/// `local: Local` field, `mounts_for(&self, &Snapshot) -> Vec<Mount>` and `create(&self, Kind,
/// key, parent, Labels) -> Result<Vec<Mount>>`. Everything else is [`Local`]'s, with the
/// snapshot's files under `<id>/fs`; overlayfs and native differ only in those two methods.
/// (A macro rather than a blanket impl, which would forbid other crates' test snapshotters.)
macro_rules! dir_snapshotter {
    ($ty:ty) => {
        impl $crate::snapshots::Snapshotter for $ty {
            fn stat(&self, key: &str) -> $crate::snapshots::Result<$crate::snapshots::Info> {
                self.local.stat(key)
            }

            fn update(
                &self,
                info: &$crate::snapshots::Info,
                fieldpaths: &[&str],
            ) -> $crate::snapshots::Result<$crate::snapshots::Info> {
                self.local.update(info, fieldpaths)
            }

            fn usage(&self, key: &str) -> $crate::snapshots::Result<$crate::snapshots::Usage> {
                self.local
                    .usage(key, |dir| $crate::snapshots::disk_usage(&dir.join("fs")))
            }

            fn mounts(
                &self,
                key: &str,
            ) -> $crate::snapshots::Result<Vec<$crate::snapshots::Mount>> {
                let s = self.local.snapshot(key)?;
                if s.kind == $crate::snapshots::Kind::Committed {
                    return Err($crate::snapshots::Error::FailedPrecondition {
                        op: "mount",
                        key: key.to_string(),
                        reason: "it is committed; make a view of it instead".into(),
                    });
                }
                Ok(self.mounts_for(&s))
            }

            fn prepare(
                &self,
                key: &str,
                parent: &str,
                labels: $crate::snapshots::Labels,
            ) -> $crate::snapshots::Result<Vec<$crate::snapshots::Mount>> {
                self.create($crate::snapshots::Kind::Active, key, parent, labels)
            }

            fn view(
                &self,
                key: &str,
                parent: &str,
                labels: $crate::snapshots::Labels,
            ) -> $crate::snapshots::Result<Vec<$crate::snapshots::Mount>> {
                self.create($crate::snapshots::Kind::View, key, parent, labels)
            }

            fn commit(
                &self,
                name: &str,
                key: &str,
                labels: $crate::snapshots::Labels,
            ) -> $crate::snapshots::Result<()> {
                self.local.commit(name, key, labels, |dir| {
                    $crate::snapshots::disk_usage(&dir.join("fs"))
                })
            }

            fn remove(&self, key: &str) -> $crate::snapshots::Result<()> {
                self.local.remove(key)
            }

            fn walk(
                &self,
                filters: &[&str],
                f: &mut dyn FnMut(&Info) -> $crate::snapshots::Result<()>,
            ) -> $crate::snapshots::Result<()> {
                self.local.walk(filters, f)
            }

            fn cleanup(&self) -> $crate::snapshots::Result<()> {
                self.local.cleanup()
            }

            fn close(&self) -> $crate::snapshots::Result<()> {
                self.local.close()
            }
        }
    };
}
pub(crate) use dir_snapshotter;
