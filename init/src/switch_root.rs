//! Leaving the initramfs: move the new root over `/` and exec its init.
//!
//! `pivot_root(2)` does not work while `/` is the initramfs rootfs, so this is the classic
//! switch_root: move the pseudo filesystems under the new root, `MS_MOVE` the new root onto
//! `/`, `chroot(".")`, and exec. The initramfs contents stay in RAM (it cannot be unmounted);
//! [`switch_root`] removes `/init` first to give that memory back.

use std::convert::Infallible;
use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::mounts::{self, MountError};

/// Errors switching root.
#[derive(Debug, thiserror::Error)]
pub enum SwitchRootError {
    /// Moving a mount failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// A syscall on the way failed.
    #[error("{op} {path} failed: {errno}", path = path.display())]
    Syscall {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
    /// A path or argument contains a NUL byte.
    #[error("invalid argument for exec: {0}")]
    Nul(#[from] std::ffi::NulError),
}

/// Pseudo filesystems carried over into the new root.
pub const CARRIED_MOUNTS: &[&str] = &["/dev", "/proc", "/sys"];

/// Switches to `new_root` (a mount point) and execs `init` there with `args` (argv after
/// `argv[0]`). Returns only on failure.
pub fn switch_root(
    new_root: &Path,
    init: &str,
    args: &[&str],
) -> Result<Infallible, SwitchRootError> {
    for mount in CARRIED_MOUNTS {
        let target = new_root.join(mount.trim_start_matches('/'));
        mounts::move_mount(Path::new(mount), &target)?;
    }
    // Give the binary's pages back once we exec; failure only costs memory.
    let _ = std::fs::remove_file("/init");
    nix::unistd::chdir(new_root).map_err(|errno| SwitchRootError::Syscall {
        op: "chdir",
        path: new_root.to_path_buf(),
        errno,
    })?;
    mounts::move_mount(Path::new("."), Path::new("/"))?;
    nix::unistd::chroot(".").map_err(|errno| SwitchRootError::Syscall {
        op: "chroot",
        path: new_root.to_path_buf(),
        errno,
    })?;
    nix::unistd::chdir("/").map_err(|errno| SwitchRootError::Syscall {
        op: "chdir",
        path: PathBuf::from("/"),
        errno,
    })?;
    let path = CString::new(init)?;
    let mut argv = vec![path.clone()];
    for arg in args {
        argv.push(CString::new(*arg)?);
    }
    nix::unistd::execv(&path, &argv).map_err(|errno| SwitchRootError::Syscall {
        op: "exec",
        path: PathBuf::from(init),
        errno,
    })
}
