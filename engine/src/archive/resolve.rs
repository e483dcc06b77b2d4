//! Path resolution *inside* a root directory, on file descriptors.
//!
//! Layer entries are untrusted: a name may hold `..`, be absolute, or go through a symlink
//! planted by this or an earlier layer that points anywhere (`/etc`, `../../..`). Like
//! containerd (`fs.RootPath`, filepath-securejoin), berth resolves such paths as if the root
//! were `/`: names are cleaned lexically first (`..` cannot climb above the root), then each
//! parent component is walked with `fstatat(AT_SYMLINK_NOFOLLOW)`; a symlink's target is read
//! with `readlinkat` and spliced into the remaining components, absolute targets restarting at
//! the root and `..` popping the walk's own stack of directory descriptors, clamped at the
//! root. Every step opens the next directory with `O_NOFOLLOW` relative to the previous one,
//! so the kernel never resolves a symlink or `..` for us and no path string ever leaves the
//! root.
//!
//! Why not `openat2(RESOLVE_IN_ROOT)`: it has the same clamping, but it fails on dangling
//! symlinks, where containerd creates the missing target directories inside the root (a layer
//! may legitimately ship `lib -> usr/lib` before `usr/lib/` exists). A hand walk reproduces
//! containerd's behaviour exactly, needs no kernel ≥ 5.6 check, and is ~100 lines.
//!
//! The final component is never resolved: callers operate on it with `*at` calls and
//! `AT_SYMLINK_NOFOLLOW`/`O_NOFOLLOW`, so an entry named like an existing symlink replaces the
//! symlink instead of writing through it.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use super::error::EntryError;

/// Linux's own limit on symlinks followed in one resolution (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Cleans an archive name the way Go's `filepath.Clean("/" + name)` does: empty and `.`
/// components vanish, `..` pops the previous component and is dropped at the root. The
/// result is relative to the root and free of `.` and `..`.
pub(crate) fn clean(name: &[u8]) -> Vec<OsString> {
    let mut out: Vec<OsString> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    out
}

/// Takes ownership of a descriptor a successful syscall just returned.
pub(crate) fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: every caller passes a descriptor freshly returned by a successful open-like
    // syscall (openat, openat2), which nothing else owns or closes.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Opens `name` under `dir` as a directory handle without following a symlink.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`, `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<libc::stat>> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file type bits of a `stat`.
pub(crate) fn kind(st: &libc::stat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT)
}

/// A directory reached by [`resolve_dir`]: its handle and its real path from the root
/// (symlinks resolved), which is what "the same file" means when tracking what a layer wrote.
#[derive(Debug)]
pub(crate) struct ResolvedDir {
    pub fd: OwnedFd,
    pub rel: PathBuf,
    /// Directories this resolution created (missing parents), in creation order.
    pub created: Vec<PathBuf>,
}

/// Walks `components` from `root`, following symlinks inside the root. Missing directories
/// are created (mode 0755, owned by the caller) when `create` is set, as containerd's
/// `mkparent` does; otherwise a missing one is `Ok(None)`.
pub(crate) fn resolve_dir(
    root: BorrowedFd<'_>,
    components: &[OsString],
    create: bool,
) -> Result<Option<ResolvedDir>, EntryError> {
    let sys = |op| move |source| EntryError::Sys { op, source };
    let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
    let mut todo: VecDeque<OsString> = components.iter().cloned().collect();
    let mut created = Vec::new();
    let mut links = 0;
    while let Some(comp) = todo.pop_front() {
        match comp.as_bytes() {
            b"" | b"." => continue,
            b".." => {
                stack.pop();
                continue;
            }
            _ => {}
        }
        let cur = stack.last().map_or(root, |(fd, _)| fd.as_fd());
        match lstat_at(cur, &comp).map_err(sys("lstat"))? {
            None if create => {
                match nix::sys::stat::mkdirat(
                    Some(cur.as_raw_fd()),
                    comp.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                ) {
                    // Someone (this process's own earlier step) made it meanwhile: re-examine.
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys("mkdir")(e)),
                }
                let mut rel: PathBuf = stack.iter().map(|(_, n)| n.as_os_str()).collect();
                rel.push(&comp);
                created.push(rel);
                todo.push_front(comp);
            }
            None => return Ok(None),
            Some(st) if kind(&st) == SFlag::S_IFDIR => {
                let fd = open_dir(cur, &comp).map_err(sys("open directory"))?;
                stack.push((fd, comp));
            }
            Some(st) if kind(&st) == SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(EntryError::SymlinkLoop);
                }
                let target = nix::fcntl::readlinkat(Some(cur.as_raw_fd()), comp.as_os_str())
                    .map_err(sys("readlink"))?;
                let target = target.as_bytes();
                if target.first() == Some(&b'/') {
                    stack.clear();
                }
                for part in target.rsplit(|&b| b == b'/') {
                    todo.push_front(OsStr::from_bytes(part).to_owned());
                }
            }
            Some(_) => {
                let mut rel: PathBuf = stack.iter().map(|(_, n)| n.as_os_str()).collect();
                rel.push(&comp);
                return Err(EntryError::NotADirectory {
                    component: rel.display().to_string(),
                });
            }
        }
    }
    let rel: PathBuf = stack.iter().map(|(_, n)| n.as_os_str()).collect();
    let fd = match stack.pop() {
        Some((fd, _)) => fd,
        None => root.try_clone_to_owned().map_err(|e| EntryError::Sys {
            op: "dup",
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
        })?,
    };
    Ok(Some(ResolvedDir { fd, rel, created }))
}

/// Removes `name` under `dir` and, if it is a directory, everything below it, never
/// following symlinks (`rm -rf` on descriptors). A missing `name` is not an error.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    use nix::unistd::UnlinkatFlags;
    match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = open_listable(dir, name)?;
    for child in list_dir(sub.as_fd())? {
        remove_all_at(sub.as_fd(), &child)?;
    }
    match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `name` under `dir` for reading its entries, without following a symlink.
pub(crate) fn open_listable(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(own)
}

/// The names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// A path naming `name` inside the directory `dir` through `/proc/self/fd`, for the few
/// calls that have no `*at` form (`lsetxattr`). The directory part is the already-resolved
/// descriptor; only `name`, the final component, is looked up, and the `l*` calls do not
/// follow it.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    Path::new("/proc/self/fd")
        .join(dir.as_raw_fd().to_string())
        .join(name)
}
