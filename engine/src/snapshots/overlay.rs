//! The `overlayfs` snapshotter (default), after containerd's `plugins/snapshots/overlay`.
//!
//! Each snapshot is `<root>/snapshots/<id>/fs` (its own changes: the overlay upper directory
//! while active, a lower directory once committed) and, for active snapshots, `work` (overlay's
//! work directory, same filesystem as `fs`). Nothing is copied: a child stacks its parents'
//! `fs` directories as `lowerdir`, topmost first.
//!
//! Mounts returned:
//! * no parent: a bind mount of `fs` (`rw` for active, `ro` for a view);
//! * a view with one parent: a read-only bind mount of the parent's `fs` (an overlay needs two
//!   lower layers when it has no upper one);
//! * otherwise an `overlay` mount: `lowerdir=<parent fs>:<grandparent fs>:…` and, for an active
//!   snapshot, `upperdir=<fs>,workdir=<work>`; plus `index=off` when the kernel knows the
//!   option (`/sys/module/overlay/parameters/index` exists), because the inode index ties an
//!   upper directory to its exact lower set and would refuse a remount after a parent moves.
//!
//! Renaming a directory that comes from a lower layer fails with `EXDEV` on overlayfs without
//! `redirect_dir` (containerd's suite skips that step for overlayfs too); the conformance
//! suite is told so through [`super::testsuite::Capabilities::rename_lower_directory`].

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::unistd::{chown, Gid, Uid};

use super::local::Local;
use super::metastore::Snapshot;
use super::{Error, Info, Kind, Labels, Mount, Result};

/// The overlayfs snapshotter rooted at one directory.
pub struct Overlay {
    local: Local,
    index_off: bool,
}

/// Why overlayfs cannot be used on this kernel, or `None` when it can (the kernel lists
/// `overlay` in `/proc/filesystems`; the module may need loading first). Used to mark the
/// plugin skipped with a reason instead of failing at the first prepare.
pub fn unsupported_reason() -> Option<String> {
    match fs::read_to_string("/proc/filesystems") {
        Ok(s)
            if s.lines()
                .any(|l| l.split_whitespace().last() == Some("overlay")) =>
        {
            None
        }
        Ok(_) => Some("the kernel has no overlay filesystem (not in /proc/filesystems)".into()),
        Err(e) => Some(format!("cannot read /proc/filesystems: {e}")),
    }
}

/// Checks that an overlay can actually be mounted with its layers under `root` (some
/// filesystems, overlayfs itself among them, cannot hold an upper layer), by mounting and
/// unmounting a one-layer overlay in `<root>/overlay-probe`, as containerd's
/// `overlayutils.Supported` does.
pub fn probe(root: &Path) -> Result<()> {
    let dir = root.join("overlay-probe");
    let _ = fs::remove_dir_all(&dir);
    for d in ["lower", "upper", "work", "merged"] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(Error::io("create directory", &p))?;
    }
    let m = Mount {
        fs_type: "overlay".into(),
        source: "overlay".into(),
        target: None,
        options: vec![
            format!("lowerdir={}", dir.join("lower").display()),
            format!("upperdir={}", dir.join("upper").display()),
            format!("workdir={}", dir.join("work").display()),
        ],
    };
    let r =
        berth_api::mount::MountGuard::mount(&[m], &dir.join("merged")).and_then(|g| g.unmount());
    let _ = fs::remove_dir_all(&dir);
    Ok(r?)
}

impl Overlay {
    /// Opens (creating) an overlayfs snapshotter under `root`, removing leftovers of
    /// interrupted operations.
    pub fn open(root: &Path) -> Result<Self> {
        Ok(Overlay {
            local: Local::open(root)?,
            index_off: Path::new("/sys/module/overlay/parameters/index").exists(),
        })
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &Path {
        self.local.root()
    }

    /// What the conformance suite may expect: the host defaults, except that renaming a
    /// directory from a lower layer works only when the overlay module redirects directories
    /// by default (`/sys/module/overlay/parameters/redirect_dir` is `Y`; berth does not pass
    /// `redirect_dir=on`, whose redirects older kernels mishandle).
    #[cfg(feature = "conformance")]
    pub fn suite_capabilities() -> super::testsuite::Capabilities {
        let redirect = fs::read_to_string("/sys/module/overlay/parameters/redirect_dir")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        super::testsuite::Capabilities {
            rename_lower_directory: redirect,
            ..super::testsuite::Capabilities::host_default()
        }
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.local.dir(id).join("fs")
    }

    fn mounts_for(&self, s: &Snapshot) -> Vec<Mount> {
        let dir = self.local.dir(s.id);
        let bind = |src: PathBuf, ro: bool| {
            vec![Mount {
                fs_type: "bind".into(),
                source: src.to_string_lossy().into_owned(),
                target: None,
                options: vec![if ro { "ro" } else { "rw" }.into(), "rbind".into()],
            }]
        };
        if s.parent_ids.is_empty() {
            return bind(dir.join("fs"), s.kind == Kind::View);
        }
        if s.kind == Kind::View && s.parent_ids.len() == 1 {
            return bind(self.fs_dir(s.parent_ids[0]), true);
        }
        let mut options = Vec::new();
        if self.index_off {
            options.push("index=off".to_string());
        }
        if s.kind == Kind::Active {
            options.push(format!("workdir={}", dir.join("work").display()));
            options.push(format!("upperdir={}", dir.join("fs").display()));
        }
        let lower: Vec<String> = s
            .parent_ids
            .iter()
            .map(|id| self.fs_dir(*id).to_string_lossy().into_owned())
            .collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        vec![Mount {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            target: None,
            options,
        }]
    }

    fn create(&self, kind: Kind, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let s = self.local.create(kind, key, parent, labels, |tmp, s| {
            let fsd = tmp.join("fs");
            fs::create_dir(&fsd).map_err(Error::io("create directory", &fsd))?;
            fs::set_permissions(&fsd, fs::Permissions::from_mode(0o755))
                .map_err(Error::io("chmod", &fsd))?;
            if let Some(p) = s.parent_ids.first() {
                // The upper root takes the parent root's owner, so an image whose root is
                // not owned by root keeps it (containerd does the same).
                let pfs = self.fs_dir(*p);
                let md = fs::metadata(&pfs).map_err(Error::io("stat", &pfs))?;
                chown(
                    &fsd,
                    Some(Uid::from_raw(md.uid())),
                    Some(Gid::from_raw(md.gid())),
                )
                .map_err(|e| Error::Io {
                    op: "chown",
                    path: fsd.clone(),
                    source: e.into(),
                })?;
            }
            if kind == Kind::Active {
                let work = tmp.join("work");
                fs::create_dir(&work).map_err(Error::io("create directory", &work))?;
                fs::set_permissions(&work, fs::Permissions::from_mode(0o711))
                    .map_err(Error::io("chmod", &work))?;
            }
            Ok(())
        })?;
        Ok(self.mounts_for(&s))
    }
}

super::local::dir_snapshotter!(Overlay);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::Snapshotter;
    use berth_api::errdefs::{Classify, Kind as ErrKind};

    #[test]
    fn mounts_shapes_and_layout() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        let m = o.prepare("a", "", Labels::new()).unwrap();
        assert_eq!(m[0].fs_type, "bind");
        assert_eq!(m[0].options, ["rw", "rbind"]);
        let id_a = o.local.snapshot("a").unwrap().id;
        assert!(t.path().join(format!("snapshots/{id_a}/fs")).is_dir());
        assert!(t.path().join(format!("snapshots/{id_a}/work")).is_dir());
        o.commit("A", "a", Labels::new()).unwrap();
        let v = o.view("v1", "A", Labels::new()).unwrap();
        assert_eq!(v[0].fs_type, "bind");
        assert_eq!(v[0].options[0], "ro");
        assert!(
            v[0].source.ends_with(&format!("snapshots/{id_a}/fs")),
            "{v:?}"
        );
        let b = o.prepare("b", "A", Labels::new()).unwrap();
        assert_eq!(b[0].fs_type, "overlay");
        let lower = b[0]
            .options
            .iter()
            .find(|o| o.starts_with("lowerdir="))
            .unwrap();
        assert!(lower.ends_with(&format!("snapshots/{id_a}/fs")), "{lower}");
        assert!(b[0].options.iter().any(|o| o.starts_with("upperdir=")));
        assert!(b[0].options.iter().any(|o| o.starts_with("workdir=")));
        o.commit("B", "b", Labels::new()).unwrap();
        let id_b = o.local.snapshot("B").unwrap().id;
        let v2 = o.view("v2", "B", Labels::new()).unwrap();
        let lower = v2[0]
            .options
            .iter()
            .find(|o| o.starts_with("lowerdir="))
            .unwrap();
        let dirs: Vec<&str> = lower["lowerdir=".len()..].split(':').collect();
        assert!(
            dirs[0].ends_with(&format!("/{id_b}/fs")) && dirs[1].ends_with(&format!("/{id_a}/fs")),
            "topmost first: {lower}"
        );
        assert!(!v2[0].options.iter().any(|o| o.starts_with("upperdir=")));
        assert_eq!(o.mounts("v2").unwrap(), v2);
        assert_eq!(
            o.mounts("A").unwrap_err().kind(),
            ErrKind::FailedPrecondition
        );
    }

    #[test]
    fn leftovers_are_cleaned_at_open_and_records_survive() {
        let t = tempfile::tempdir().unwrap();
        let kept;
        {
            let o = Overlay::open(t.path()).unwrap();
            o.prepare("a", "", Labels::new()).unwrap();
            kept = o.local.snapshot("a").unwrap().id;
            o.prepare("gone", "", Labels::new()).unwrap();
            o.remove("gone").unwrap();
        }
        let snaps = t.path().join("snapshots");
        // What a crash can leave: a half-built temp dir, a half-deleted dir, an id directory
        // whose create transaction never committed.
        for d in ["new-1-2/fs", "rm-77/fs/x", "999/fs"] {
            fs::create_dir_all(snaps.join(d)).unwrap();
        }
        let o = Overlay::open(t.path()).unwrap();
        let mut left: Vec<String> = fs::read_dir(&snaps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, vec![kept.to_string()]);
        assert_eq!(o.stat("a").unwrap().kind, Kind::Active);
        // A new snapshot never reuses an id whose record was committed, even if removed.
        o.prepare("b", "", Labels::new()).unwrap();
        assert!(o.local.snapshot("b").unwrap().id > kept + 1);
    }

    #[test]
    fn failed_create_leaves_no_directory() {
        let t = tempfile::tempdir().unwrap();
        let o = Overlay::open(t.path()).unwrap();
        o.prepare("a", "", Labels::new()).unwrap();
        assert!(o.prepare("a", "", Labels::new()).is_err());
        assert!(o
            .prepare("b", "missing-parent", Labels::new())
            .unwrap_err()
            .is_not_found());
        assert_eq!(fs::read_dir(t.path().join("snapshots")).unwrap().count(), 1);
        o.close().unwrap();
        o.close().unwrap();
        assert!(matches!(o.stat("a"), Err(Error::Closed)));
    }
}
