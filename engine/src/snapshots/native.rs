//! The `native` snapshotter: a full copy of the parent per snapshot, after containerd's
//! `plugins/snapshots/native`. Slow and space-hungry, but it needs nothing from the kernel
//! beyond bind mounts and works on any filesystem — the fallback where overlayfs is missing
//! or the root sits on a filesystem overlayfs refuses as upper layer.
//!
//! Each snapshot is `<root>/snapshots/<id>/fs`, a complete tree: prepare and view copy the
//! parent's `fs` with [`super::copy_tree`] (owners, modes, xattrs, hardlinks, symlinks, device
//! nodes, mtimes). Mounts are always one bind mount of `fs`, `ro` for views.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::local::Local;
use super::metastore::Snapshot;
use super::{copy_tree, Error, Info, Kind, Labels, Mount, Result};

/// The native (copying) snapshotter rooted at one directory.
pub struct Native {
    local: Local,
}

impl Native {
    /// Opens (creating) a native snapshotter under `root`, removing leftovers of interrupted
    /// operations.
    pub fn open(root: &Path) -> Result<Self> {
        Ok(Native {
            local: Local::open(root)?,
        })
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &Path {
        self.local.root()
    }

    /// What the conformance suite may expect: every capability of a local snapshotter on
    /// this host (copies behave like a plain filesystem).
    #[cfg(feature = "conformance")]
    pub fn suite_capabilities() -> super::testsuite::Capabilities {
        super::testsuite::Capabilities::host_default()
    }

    fn mounts_for(&self, s: &Snapshot) -> Vec<Mount> {
        vec![Mount {
            fs_type: "bind".into(),
            source: self
                .local
                .dir(s.id)
                .join("fs")
                .to_string_lossy()
                .into_owned(),
            target: None,
            options: vec![
                if s.kind == Kind::View { "ro" } else { "rw" }.into(),
                "rbind".into(),
            ],
        }]
    }

    fn create(&self, kind: Kind, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let s = self.local.create(kind, key, parent, labels, |tmp, s| {
            let fsd = tmp.join("fs");
            fs::create_dir(&fsd).map_err(Error::io("create directory", &fsd))?;
            match s.parent_ids.first() {
                Some(p) => copy_tree(&self.local.dir(*p).join("fs"), &fsd),
                None => fs::set_permissions(&fsd, fs::Permissions::from_mode(0o755))
                    .map_err(Error::io("chmod", &fsd)),
            }
        })?;
        Ok(self.mounts_for(&s))
    }
}

super::local::dir_snapshotter!(Native);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::Snapshotter;

    #[test]
    fn prepare_copies_parent_and_usage_is_recorded() {
        let t = tempfile::tempdir().unwrap();
        let n = Native::open(t.path()).unwrap();
        let m = n.prepare("a", "", Labels::new()).unwrap();
        let a_fs = Path::new(&m[0].source).to_path_buf();
        fs::write(a_fs.join("f"), vec![7u8; 8192]).unwrap();
        n.commit("A", "a", Labels::new()).unwrap();
        let u = n.usage("A").unwrap();
        assert_eq!(u.inodes, 2, "{u:?}");
        assert!(u.size >= 8192, "{u:?}");
        let v = n.view("v", "A", Labels::new()).unwrap();
        assert_eq!(v[0].options[0], "ro");
        assert_eq!(
            fs::read(Path::new(&v[0].source).join("f")).unwrap(),
            vec![7u8; 8192]
        );
        // The copy is independent of the parent.
        fs::write(Path::new(&v[0].source).join("g"), b"x").unwrap();
        assert!(!a_fs.join("g").exists());
    }
}

#[cfg(test)]
mod concurrency {
    use super::*;
    use crate::snapshots::Snapshotter;
    use berth_api::errdefs::{Classify, Kind as ErrKind};
    use std::sync::Arc;

    /// Many threads preparing, committing, viewing and removing at once on one snapshotter:
    /// no deadlock, no lost or duplicated record, no stray directory.
    #[test]
    fn concurrent_callers_are_serialised_safely() {
        let t = tempfile::tempdir().unwrap();
        let n: Arc<Native> = Arc::new(Native::open(t.path()).unwrap());
        n.prepare("base-a", "", Labels::new()).unwrap();
        n.commit("base", "base-a", Labels::new()).unwrap();
        let threads: Vec<_> = (0..6)
            .map(|th| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for i in 0..15 {
                        let k = format!("t{th}-{i}");
                        n.prepare(&k, "base", Labels::new()).unwrap();
                        n.commit(&format!("{k}-c"), &k, Labels::new()).unwrap();
                        n.view(&format!("{k}-v"), &format!("{k}-c"), Labels::new())
                            .unwrap();
                        if i % 2 == 0 {
                            n.remove(&format!("{k}-v")).unwrap();
                            n.remove(&format!("{k}-c")).unwrap();
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let mut count = 0;
        n.walk(&[], &mut |_| {
            count += 1;
            Ok(())
        })
        .unwrap();
        // base + per thread 7 odd iterations × (committed + view).
        assert_eq!(count, 1 + 6 * 7 * 2);
        let dirs = fs::read_dir(t.path().join("snapshots")).unwrap().count();
        assert_eq!(dirs, count);
        let e = n.remove("base").unwrap_err();
        assert_eq!(e.kind(), ErrKind::FailedPrecondition);
    }
}
