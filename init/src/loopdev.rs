//! Read-only loop devices: how stage 1 turns `/berth/root.erofs` into a block device.
//!
//! A free device comes from `/dev/loop-control` (`LOOP_CTL_GET_FREE`), then the file is bound
//! with `LOOP_CONFIGURE` (one atomic ioctl, Linux 5.8+), falling back to `LOOP_SET_FD` +
//! `LOOP_SET_STATUS64` on older kernels. The backing file is opened read-only, which makes
//! the device read-only too (`LO_FLAGS_READ_ONLY`). See loop(4).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Errors attaching a loop device.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// A file or device cannot be opened.
    #[error("cannot open {path}: {source}", path = path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An ioctl failed.
    #[error("{op} on {path} failed: {errno}", path = path.display())]
    Ioctl {
        /// The request name.
        op: &'static str,
        /// The device.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// `LO_FLAGS_READ_ONLY` from `<linux/loop.h>`.
pub const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn info_for(file: &Path) -> LoopInfo64 {
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_READ_ONLY,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    };
    let name = file.as_os_str().as_encoded_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    info
}

fn open(path: &Path, write: bool) -> Result<File, LoopError> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .map_err(|source| LoopError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Attaches `file` read-only to a free loop device and returns the device path
/// (e.g. `/dev/loop0`). `dev` is the devtmpfs directory (`/dev`).
pub fn attach_read_only(file: &Path, dev: &Path) -> Result<PathBuf, LoopError> {
    let control_path = dev.join("loop-control");
    let control = open(&control_path, true)?;
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
    let n = Errno::result(n).map_err(|errno| LoopError::Ioctl {
        op: "LOOP_CTL_GET_FREE",
        path: control_path,
        errno,
    })?;
    let device = dev.join(format!("loop{n}"));
    let backing = open(file, false)?;
    let loop_dev = open(&device, true).or_else(|_| open(&device, false))?;

    let config = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: info_for(file),
        reserved: [0; 8],
    };
    // SAFETY: `config` is a valid loop_config that outlives the call; the kernel only reads it.
    let res = unsafe {
        libc::ioctl(
            loop_dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &config as *const LoopConfig,
        )
    };
    match Errno::result(res) {
        Ok(_) => return Ok(device),
        // Kernels before 5.8 do not know LOOP_CONFIGURE.
        Err(Errno::EINVAL | Errno::ENOTTY) => {}
        Err(errno) => {
            return Err(LoopError::Ioctl {
                op: "LOOP_CONFIGURE",
                path: device,
                errno,
            })
        }
    }

    // SAFETY: LOOP_SET_FD takes the backing file descriptor as its argument.
    let res = unsafe {
        libc::ioctl(
            loop_dev.as_raw_fd(),
            LOOP_SET_FD as _,
            backing.as_raw_fd() as libc::c_ulong,
        )
    };
    Errno::result(res).map_err(|errno| LoopError::Ioctl {
        op: "LOOP_SET_FD",
        path: device.clone(),
        errno,
    })?;
    let info = info_for(file);
    // SAFETY: `info` is a valid loop_info64 that outlives the call; the kernel only reads it.
    let res = unsafe {
        libc::ioctl(
            loop_dev.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            &info as *const LoopInfo64,
        )
    };
    if let Err(errno) = Errno::result(res) {
        // SAFETY: LOOP_CLR_FD takes no argument; it undoes the LOOP_SET_FD above.
        unsafe { libc::ioctl(loop_dev.as_raw_fd(), LOOP_CLR_FD as _) };
        return Err(LoopError::Ioctl {
            op: "LOOP_SET_STATUS64",
            path: device,
            errno,
        });
    }
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }

    #[test]
    fn file_name_is_truncated_and_terminated() {
        let long = "x".repeat(100);
        let info = info_for(Path::new(&long));
        assert_eq!(info.lo_file_name[62], b'x');
        assert_eq!(info.lo_file_name[63], 0);
        assert_eq!(info.lo_flags, LO_FLAGS_READ_ONLY);
    }
}
