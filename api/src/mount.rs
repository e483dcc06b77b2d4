//! Mounting what a snapshotter returns (containerd's `core/mount`, for the types berth's
//! snapshotters produce: `bind` and `overlay`; any other type is passed to mount(2) as is).
//!
//! Overlay mounts of deep chains can exceed the one page of option data mount(2) accepts
//! (128 layers × ~50-byte paths). containerd then mounts from a child process chdir'd into the
//! common parent directory with relative paths; a chdir is process-wide and unsafe in a
//! multithreaded daemon, so instead the common parent is opened with `O_PATH` and the lower
//! directories are named through `/proc/self/fd/<n>/…`, which the kernel resolves at mount time.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount to perform, in containerd's shape (`core/mount/mount.go`). A list of mounts is
/// applied in order on the same target. Snapshotters return these; the Snapshots and Transfer
/// services carry them on the wire, and clients mount them with [`mount_all`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    /// The filesystem type: `bind`, `overlay`, … (containerd's `type`).
    pub fs_type: String,
    /// The source: a directory for bind mounts, the fs type name for overlay.
    pub source: String,
    /// A path relative to the mount target to mount on, when not the target itself.
    pub target: Option<String>,
    /// Mount options: flags such as `ro`, `rbind`, and `key=value` data such as `lowerdir=`.
    pub options: Vec<String>,
}

/// A mount or unmount that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// mount(2) refused, or the options cannot be passed to it.
    #[error("mount {fs_type} {source_path:?} on {}: {reason}", target.display())]
    Mount {
        fs_type: String,
        source_path: String,
        target: PathBuf,
        reason: String,
        #[source]
        source: Option<nix::Error>,
    },
    /// Opening a directory or unmounting failed.
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result of a mount operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { op, path, source }
    }
}

/// The largest option string mount(2) takes (one page, with its terminating NUL).
fn page_limit() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map(|p| p as usize)
        .unwrap_or(4096)
        - 1
}

fn flag(opt: &str) -> Option<(bool, MsFlags)> {
    Some(match opt {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "remount" => (true, MsFlags::MS_REMOUNT),
        _ => return None,
    })
}

fn mount_err(m: &Mount, target: &Path, reason: &str, e: Option<nix::Error>) -> Error {
    Error::Mount {
        fs_type: m.fs_type.clone(),
        source_path: m.source.clone(),
        target: target.to_path_buf(),
        reason: reason.to_string(),
        source: e,
    }
}

/// Longest common directory of absolute paths.
fn common_dir(paths: &[&str]) -> PathBuf {
    let mut common: Vec<&str> = paths[0].split('/').collect();
    common.pop(); // a directory strictly above the first path
    for p in &paths[1..] {
        let parts: Vec<&str> = p.split('/').collect();
        let n = common
            .iter()
            .zip(&parts)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(n.min(parts.len().saturating_sub(1)));
    }
    let s = common.join("/");
    PathBuf::from(if s.is_empty() { "/".to_string() } else { s })
}

/// Mounts one entry on `target`.
pub fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let target = match &m.target {
        Some(sub) => target.join(sub.trim_start_matches('/')),
        None => target.to_path_buf(),
    };
    let mut flags = MsFlags::empty();
    let mut data: Vec<String> = Vec::new();
    for o in &m.options {
        match flag(o) {
            Some((true, f)) => flags |= f,
            Some((false, f)) => flags &= !f,
            None => data.push(o.clone()),
        }
    }
    if m.fs_type == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    let mut joined = data.join(",");
    // Kept open until mount(2) returns: the /proc/self/fd paths below name it.
    let mut _dirfd = None;
    if joined.len() > page_limit() {
        if let Some(pos) = data.iter().position(|d| d.starts_with("lowerdir=")) {
            let lowers: Vec<&str> = data[pos]["lowerdir=".len()..].split(':').collect();
            let base = common_dir(&lowers);
            let dir = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_PATH | nix::libc::O_DIRECTORY)
                .open(&base)
                .map_err(Error::io("open (O_PATH)", &base))?;
            let prefix = format!("/proc/self/fd/{}", dir.as_raw_fd());
            let rel: Vec<String> = lowers
                .iter()
                .map(|l| {
                    let r = Path::new(l).strip_prefix(&base).unwrap_or(Path::new(l));
                    format!("{prefix}/{}", r.display())
                })
                .collect();
            data[pos] = format!("lowerdir={}", rel.join(":"));
            joined = data.join(",");
            _dirfd = Some(dir);
        }
        if joined.len() > page_limit() {
            return Err(mount_err(
                m,
                &target,
                &format!(
                    "options are {} bytes, more than mount(2) accepts",
                    joined.len()
                ),
                None,
            ));
        }
    }
    let is_bind = flags.contains(MsFlags::MS_BIND);
    let first_flags = if is_bind {
        flags & !MsFlags::MS_RDONLY
    } else {
        flags
    };
    let data_opt = (!joined.is_empty()).then_some(joined.as_str());
    mount(
        Some(m.source.as_str()),
        &target,
        Some(m.fs_type.as_str()),
        first_flags,
        data_opt,
    )
    .map_err(|e| mount_err(m, &target, "mount(2) failed", Some(e)))?;
    drop(_dirfd);
    // A bind mount ignores MS_RDONLY and the like on creation: they take a remount.
    if is_bind && flags.intersects(!(MsFlags::MS_BIND | MsFlags::MS_REC)) {
        let re = (flags & !MsFlags::MS_REC) | MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
        if let Err(e) = mount(None::<&str>, &target, None::<&str>, re, None::<&str>) {
            let _ = umount2(&target, MntFlags::MNT_DETACH);
            return Err(mount_err(
                m,
                &target,
                "read-only remount of the bind mount failed",
                Some(e),
            ));
        }
    }
    Ok(())
}

/// Mounts `mounts` in order on `target`; on failure, unmounts what it mounted.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..i {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (repeats until it is no longer a mount point).
pub fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..64 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(nix::Error::EBUSY) => {
                umount2(target, MntFlags::MNT_DETACH).map_err(|e| Error::Io {
                    op: "unmount (lazy)",
                    path: target.to_path_buf(),
                    source: e.into(),
                })?;
            }
            Err(e) => {
                return Err(Error::Io {
                    op: "unmount",
                    path: target.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
    Ok(())
}

/// Mounts on creation and unmounts on drop, so a failing test or an early return never leaves
/// a mount behind.
pub struct MountGuard {
    target: PathBuf,
    mounted: bool,
}

impl MountGuard {
    /// Mounts `mounts` on `target`.
    pub fn mount(mounts: &[Mount], target: &Path) -> Result<Self> {
        mount_all(mounts, target)?;
        Ok(MountGuard {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, reporting errors (drop only logs them).
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        unmount_all(&self.target)
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = unmount_all(&self.target) {
                tracing::warn!(error = %e, "unmount on drop failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_dir_is_strictly_above_every_path() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            common_dir(&["/r/snapshots/1/fs", "/r/snapshots/22/fs"]),
            p("/r/snapshots")
        );
        assert_eq!(common_dir(&["/r/snapshots/1/fs"]), p("/r/snapshots/1"));
        assert_eq!(common_dir(&["/a/x", "/b/y"]), p("/"));
        // A path that is a prefix of another still gets a directory above both.
        assert_eq!(common_dir(&["/r/s/1/fs", "/r/s/1/fs/deeper"]), p("/r/s/1"));
    }

    #[test]
    fn option_flags_and_data_are_split() {
        assert_eq!(flag("ro"), Some((true, MsFlags::MS_RDONLY)));
        assert_eq!(flag("rw"), Some((false, MsFlags::MS_RDONLY)));
        assert_eq!(
            flag("rbind"),
            Some((true, MsFlags::MS_BIND | MsFlags::MS_REC))
        );
        assert_eq!(flag("lowerdir=/a"), None);
        assert_eq!(flag("index=off"), None);
    }
}
