//! Pinned network namespaces, as containerd's CRI makes them (`pkg/netns`): a new network
//! namespace is created by a short-lived thread (`unshare(CLONE_NEWNET)` changes only the
//! calling thread) and kept alive by bind-mounting its `/proc/thread-self/ns/net` onto a
//! file, before any process lives in it. CNI plugins are then given that path, and so is the
//! sandbox's OCI spec: the pause process joins the namespace CNI already configured.
//!
//! The pin outlives berth-cri (it is a mount, not a file descriptor), so a restarted
//! berth-cri finds the sandbox's network where the sandbox's labels say it is.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, Result};

/// The pin of sandbox `id` under `dir`.
pub fn path_for(dir: &Path, id: &str) -> PathBuf {
    // `ip netns` lists these; the short prefix keeps its table readable.
    dir.join(format!("berth-{id}"))
}

fn io(what: String, e: impl Into<std::io::Error>) -> Error {
    Error::Io {
        what,
        source: e.into(),
    }
}

/// Creates a network namespace pinned at `path` (whose directory is created if needed).
pub fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io(format!("create the netns directory {}", dir.display()), e))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io(format!("create the netns pin {}", path.display()), e))?;
    let target = path.to_owned();
    let pinned = std::thread::spawn(move || -> Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| io("unshare(CLONE_NEWNET)".to_owned(), e))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            io(
                format!("bind-mount a new netns onto {}", target.display()),
                e,
            )
        })
        // The thread ends here, in the new namespace: nothing else ever runs on it.
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Io {
            what: "the netns thread panicked".into(),
            source: std::io::Error::other("panic"),
        })
    });
    if pinned.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pinned
}

/// Whether `path` is a pinned namespace (a mount point of an nsfs file).
pub fn is_pinned(path: &Path) -> bool {
    // nsfs's magic number: a pin stats as a file on nsfs; the bare file does not.
    const NSFS_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x6e73_6673);
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Unpins and removes `path`; a missing pin is no error (StopPodSandbox repeats).
pub fn remove(path: &Path) -> Result<()> {
    if is_pinned(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| io(format!("unmount the netns pin {}", path.display()), e))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("remove {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_and_unpin() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: pinning a network namespace needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = path_for(&d.path().join("netns"), "abc");
        create(&p).unwrap();
        assert!(is_pinned(&p));
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        drop(f);
        // A second pin of the same name is refused, the first stays.
        assert!(create(&p).is_err());
        assert!(is_pinned(&p));
        remove(&p).unwrap();
        assert!(!p.exists());
        remove(&p).unwrap();
        assert_eq!(std::fs::read_link("/proc/self/ns/net").unwrap(), mine);
    }
}
