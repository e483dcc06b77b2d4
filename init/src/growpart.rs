//! Growing the state partition to fill its disk, on the first boot after `dd`.
//!
//! The disk image is small (it must fit any target disk); the disk it is written to is
//! larger. Before the state partition is checked and mounted, init compares the GPT with the
//! disk's real size and, when the disk is larger: moves the backup GPT (header and entry
//! array) to the disk's last sectors, extends the partition entry to the new last usable
//! sector (rounded down to 1 MiB), updates the protective MBR and both CRCs, then tells the
//! kernel the new size with `BLKPG_RESIZE_PARTITION` (the other partitions may be in use, so
//! re-reading the whole table is not an option). After mounting, `resize2fs` grows ext4
//! online to the new size.
//!
//! Only the partition carrying init's state label is ever resized, and only when it is the
//! last partition on the disk: the label is the operator's consent (see [`crate::state_disk`]).
//!
//! Written by hand: the edit is a few fields and two CRCs of UEFI §5.3, and the GPT crates
//! rewrite whole tables (regenerating what they do not model) rather than doing this one
//! in-place change.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::console::Console;

/// `resize2fs` in the image (host_tools).
pub const RESIZE2FS: &str = "/usr/sbin/resize2fs";
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";

/// Growing the partition failed.
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    /// Reading or writing the disk failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// The disk or sysfs file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The disk's GPT is not what we can safely edit.
    #[error("GPT of {}: {reason}", path.display())]
    Gpt {
        /// The disk.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The kernel refused the new partition size.
    #[error("BLKPG_RESIZE_PARTITION on {}: {errno}", path.display())]
    Blkpg {
        /// The disk.
        path: PathBuf,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// resize2fs failed.
    #[error("resize2fs {}: {message}", device.display())]
    Resize {
        /// The partition.
        device: PathBuf,
        /// Exit status and output.
        message: String,
    },
}

/// A GPT edit that happened: the partition's last LBA before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    /// First LBA of the partition.
    pub first_lba: u64,
    /// Last LBA before.
    pub old_last_lba: u64,
    /// Last LBA now.
    pub new_last_lba: u64,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4]))
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// CRC32 of a GPT header of `size` bytes, with its own CRC field taken as zero.
fn header_crc(header: &[u8], size: usize) -> u32 {
    let mut h = header[..size].to_vec();
    put32(&mut h, 16, 0);
    crc32fast::hash(&h)
}

fn utf16_name(entry: &[u8]) -> String {
    let units: Vec<u16> = entry[56..128]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Grows partition `partno` (1-based), which must be labelled `label` and be the last one,
/// to the end of a disk of `total_lbas` sectors of `lb` bytes, moving the backup GPT. Returns
/// `None` when there is nothing to do. `path` names the disk in errors.
pub fn grow_gpt<D: Read + Write + Seek>(
    disk: &mut D,
    path: &Path,
    lb: u64,
    total_lbas: u64,
    partno: u32,
    label: &str,
) -> Result<Option<Grown>, GrowError> {
    let io = |op: &'static str| {
        let path = path.to_path_buf();
        move |source| GrowError::Io { op, path, source }
    };
    let bad = |reason: String| GrowError::Gpt {
        path: path.to_path_buf(),
        reason,
    };
    let lbu = lb as usize;
    let mut header = vec![0u8; lbu];
    disk.seek(SeekFrom::Start(lb)).map_err(io("seek in"))?;
    disk.read_exact(&mut header)
        .map_err(io("read the GPT header of"))?;
    if &header[..8] != GPT_SIGNATURE {
        return Err(bad("no GPT signature at LBA 1".into()));
    }
    let hsize = le32(&header, 12) as usize;
    if !(92..=lbu).contains(&hsize) {
        return Err(bad(format!("header size {hsize}")));
    }
    if header_crc(&header, hsize) != le32(&header, 16) {
        return Err(bad("primary header CRC mismatch".into()));
    }
    let old_alt = le64(&header, 32);
    let entries_lba = le64(&header, 72);
    let count = le32(&header, 80) as usize;
    let esize = le32(&header, 84) as usize;
    if esize < 128 || count == 0 || count > 1024 {
        return Err(bad(format!("{count} entries of {esize} bytes")));
    }
    let mut entries = vec![0u8; count * esize];
    disk.seek(SeekFrom::Start(entries_lba * lb))
        .map_err(io("seek in"))?;
    disk.read_exact(&mut entries)
        .map_err(io("read the GPT entries of"))?;
    if crc32fast::hash(&entries) != le32(&header, 88) {
        return Err(bad("partition entry array CRC mismatch".into()));
    }
    let idx = partno as usize - 1;
    if idx >= count {
        return Err(bad(format!("no entry {partno}")));
    }
    let entry = &entries[idx * esize..(idx + 1) * esize];
    let name = utf16_name(entry);
    if name != label {
        return Err(bad(format!(
            "partition {partno} is labelled {name:?}, not {label:?}; not resizing it"
        )));
    }
    let first = le64(entry, 32);
    let old_last = le64(entry, 40);
    for (i, other) in entries.chunks(esize).enumerate() {
        if i != idx && other[..16] != [0; 16] && le64(other, 32) > first {
            return Err(bad(format!(
                "partition {} lies after {label}; only the last partition can grow",
                i + 1
            )));
        }
    }
    let entry_sectors = ((count * esize) as u64).div_ceil(lb);
    let new_alt = total_lbas - 1;
    let backup_entries_lba = new_alt - entry_sectors;
    let new_last_usable = backup_entries_lba - 1;
    let align = (1024 * 1024 / lb).max(1);
    let new_last = ((new_last_usable + 1) / align * align).saturating_sub(1);
    if new_last <= old_last && old_alt == new_alt {
        return Ok(None);
    }
    if new_alt < old_alt {
        return Err(bad(format!(
            "the disk ({total_lbas} sectors) is smaller than its GPT says ({} sectors)",
            old_alt + 1
        )));
    }
    let new_last = new_last.max(old_last);

    put64(&mut entries, idx * esize + 40, new_last);
    let entries_crc = crc32fast::hash(&entries);
    put64(&mut header, 32, new_alt);
    put64(&mut header, 48, new_last_usable);
    put32(&mut header, 88, entries_crc);
    let crc = header_crc(&header, hsize);
    put32(&mut header, 16, crc);
    let mut backup = header.clone();
    put64(&mut backup, 24, new_alt);
    put64(&mut backup, 32, 1);
    put64(&mut backup, 72, backup_entries_lba);
    let crc = header_crc(&backup, hsize);
    put32(&mut backup, 16, crc);

    let write_at = |disk: &mut D, lba: u64, data: &[u8]| -> Result<(), GrowError> {
        disk.seek(SeekFrom::Start(lba * lb))
            .map_err(io("seek in"))?;
        disk.write_all(data).map_err(io("write the GPT of"))
    };
    // Backup first: if power fails half-way, the old primary still describes a valid disk.
    write_at(disk, backup_entries_lba, &entries)?;
    write_at(disk, new_alt, &backup)?;
    if old_alt > 1 && old_alt < new_alt {
        write_at(disk, old_alt, &vec![0u8; lbu])?;
    }
    write_at(disk, entries_lba, &entries)?;
    write_at(disk, 1, &header)?;
    // Protective MBR: partition 1 (type 0xEE) spans the disk, or 0xFFFFFFFF sectors.
    let mut mbr = vec![0u8; 512];
    disk.seek(SeekFrom::Start(0)).map_err(io("seek in"))?;
    disk.read_exact(&mut mbr).map_err(io("read the MBR of"))?;
    if mbr[446 + 4] == 0xEE {
        let size = (total_lbas - 1).min(u64::from(u32::MAX)) as u32;
        put32(&mut mbr, 446 + 12, size);
        write_at(disk, 0, &mbr)?;
    }
    disk.flush().map_err(io("flush"))?;
    Ok(Some(Grown {
        first_lba: first,
        old_last_lba: old_last,
        new_last_lba: new_last,
    }))
}

/// `struct blkpg_partition` (linux/blkpg.h).
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg` (linux/blkpg.h).
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
nix::ioctl_write_ptr_bad!(blkpg_ioctl, 0x1269, BlkpgIoctlArg);

fn sysfs_u64(path: &Path) -> Result<u64, GrowError> {
    let text = std::fs::read_to_string(path).map_err(|source| GrowError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })?;
    text.trim().parse().map_err(|_| GrowError::Gpt {
        path: path.to_path_buf(),
        reason: format!("not a number: {:?}", text.trim()),
    })
}

/// Grows the partition with kernel name `part` (`vda2`) labelled `label` to fill its disk:
/// GPT edit, then the kernel's view. `None` when it already fills the disk.
pub fn grow(part: &str, label: &str) -> Result<Option<Grown>, GrowError> {
    let sys_part = Path::new("/sys/class/block").join(part);
    let real = std::fs::canonicalize(&sys_part).map_err(|source| GrowError::Io {
        op: "resolve",
        path: sys_part.clone(),
        source,
    })?;
    let disk_name = real
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys_disk = Path::new("/sys/class/block").join(&disk_name);
    let partno = sysfs_u64(&sys_part.join("partition"))? as u32;
    let lb = sysfs_u64(&sys_disk.join("queue/logical_block_size"))?;
    // sysfs sizes are always in 512-byte units.
    let total_bytes = sysfs_u64(&sys_disk.join("size"))? * 512;
    let dev = PathBuf::from("/dev").join(&disk_name);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
        .map_err(|source| GrowError::Io {
            op: "open",
            path: dev.clone(),
            source,
        })?;
    let Some(grown) = grow_gpt(&mut file, &dev, lb, total_bytes / lb, partno, label)? else {
        return Ok(None);
    };
    file.sync_all().map_err(|source| GrowError::Io {
        op: "sync",
        path: dev.clone(),
        source,
    })?;
    tell_kernel(&file, &dev, partno, lb, &grown)?;
    Ok(Some(grown))
}

fn tell_kernel(file: &File, dev: &Path, partno: u32, lb: u64, g: &Grown) -> Result<(), GrowError> {
    let mut part = BlkpgPartition {
        start: (g.first_lba * lb) as i64,
        length: ((g.new_last_lba - g.first_lba + 1) * lb) as i64,
        pno: partno as libc::c_int,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut part as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the `part` it points to are valid, correctly laid out (linux/blkpg.h)
    // and outlive the call; the fd is an open block device.
    unsafe { blkpg_ioctl(file.as_raw_fd(), &arg) }.map_err(|errno| GrowError::Blkpg {
        path: dev.to_path_buf(),
        errno,
    })?;
    Ok(())
}

/// Grows the mounted ext4 on `device` online to its partition's size.
pub fn resize_fs(device: &Path) -> Result<(), GrowError> {
    let out = Command::new(RESIZE2FS)
        .arg(device)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| GrowError::Io {
            op: "run",
            path: PathBuf::from(RESIZE2FS),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(GrowError::Resize {
        device: device.to_path_buf(),
        message: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// [`grow`] with its outcome on the console. Returns whether the partition grew.
pub fn grow_logged(part: &str, label: &str, console: Console) -> bool {
    let started = Instant::now();
    match grow(part, label) {
        Ok(Some(g)) => {
            let mib = |lbas: u64| lbas * 512 / (1024 * 1024);
            console.notice(&format!(
                "storage: grew {part} (label {label}) to fill its disk: {} -> {} MiB, backup GPT moved to the end ({} ms)",
                mib(g.old_last_lba - g.first_lba + 1),
                mib(g.new_last_lba - g.first_lba + 1),
                started.elapsed().as_millis()
            ));
            true
        }
        Ok(None) => false,
        Err(err) => {
            console.warn(&format!("storage: not growing {part}: {err}"));
            false
        }
    }
}

/// [`resize_fs`] with its outcome on the console.
pub fn resize_fs_logged(device: &Path, console: Console) {
    let started = Instant::now();
    match resize_fs(device) {
        Ok(()) => console.info(&format!(
            "storage: resize2fs {} grew the file system online ({} ms)",
            device.display(),
            started.elapsed().as_millis()
        )),
        Err(err) => console.warn(&format!("storage: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sgdisk(args: &[&str], disk: &Path) -> Option<String> {
        let out = Command::new("sgdisk").args(args).arg(disk).output().ok()?;
        Some(
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// A real GPT made by sgdisk on a 40 MiB file, the file extended to 100 MiB, grown, and
    /// verified by sgdisk: the last partition ends 1 MiB-aligned near the end.
    #[test]
    fn grows_the_last_partition_and_moves_the_backup_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        std::fs::File::create(&path)
            .unwrap()
            .set_len(40 << 20)
            .unwrap();
        let Some(_) = sgdisk(
            &[
                "-n",
                "1:2048:+8M",
                "-c",
                "1:ESP",
                "-n",
                "2:0:+16M",
                "-c",
                "2:BERTH_STATE",
            ],
            &path,
        ) else {
            eprintln!("SKIP grows_the_last_partition_and_moves_the_backup_header: sgdisk not installed (gdisk)");
            return;
        };
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(100 << 20)
            .unwrap();
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let total = (100u64 << 20) / 512;
        // The wrong label is refused, and so is a partition that is not last.
        assert!(grow_gpt(&mut f, &path, 512, total, 2, "OTHER").is_err());
        assert!(grow_gpt(&mut f, &path, 512, total, 1, "ESP").is_err());
        let g = grow_gpt(&mut f, &path, 512, total, 2, berth_layout::labels::STATE)
            .unwrap()
            .unwrap();
        assert_eq!(g.old_last_lba, 2048 + 8 * 2048 + 16 * 2048 - 1);
        assert_eq!((g.new_last_lba + 1) % 2048, 0);
        assert!(g.new_last_lba <= total - 34);
        drop(f);
        let verify = sgdisk(&["-v"], &path).unwrap();
        assert!(verify.contains("No problems found"), "{verify}");
        let info = sgdisk(&["-i", "2"], &path).unwrap();
        assert!(
            info.contains(&format!("Last sector: {}", g.new_last_lba)),
            "{info}"
        );
        // A second run has nothing to do.
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert_eq!(
            grow_gpt(&mut f, &path, 512, total, 2, berth_layout::labels::STATE).unwrap(),
            None
        );
    }
}
