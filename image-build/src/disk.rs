//! The bootable disk image (`berth-image disk`): what `dd` writes to a bare-metal node's disk.
//!
//! Layout (GPT, 512-byte sectors, partitions aligned to 1 MiB):
//!
//! | # | GPT label | type | contents |
//! | - | --------- | ---- | -------- |
//! | 1 | `BERTH_ESP` | EFI system partition | FAT32: systemd-boot as `EFI/BOOT/BOOTX64.EFI`, `loader/loader.conf`, the two UKI slots in `EFI/Linux/` |
//! | 2 | `BERTH_STATE` | Linux data | a small ext4 that init grows to fill the disk on first boot |
//!
//! The boot manager is **systemd-boot** (Debian `systemd-boot-efi`) with its boot counting:
//! each slot is a Boot Loader Specification Type #2 entry named `berth-<generation>-<slot>.efi`
//! (`slot` is `a` or `b`). systemd-boot sorts entries by name, newest generation first, and puts
//! entries whose try counter reached zero last. An upgrade writes the inactive slot as
//! `berth-<next>-<slot>+1-0.efi` (one try); systemd-boot renames it to `+0-1` as it boots it;
//! init renames it to the plain name once berthd is ready (the boot is good). If it never
//! gets there, the next boot finds `+0-1` (bad) sorted last and starts the other slot: the
//! rollback. The image starts with the same UKI in both slots (`berth-1-a.efi`,
//! `berth-0-b.efi`), so there is a fallback from the first boot on.
//!
//! Reproducible: partition and disk GUIDs, the FAT volume id and the ext4 UUID/hash seed are
//! derived from the UKI's digest; mtools, mkfs.vfat (`--invariant`) and mke2fs
//! (`E2FSPROGS_FAKE_TIME`) take their times from `SOURCE_DATE_EPOCH`.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_layout::slots::{self, Entry};
use sha2::{Digest, Sha256};

use crate::fsutil::{self, io_err, FsError};

/// systemd-boot, from Debian's `systemd-boot-efi`.
pub const DEFAULT_BOOT_MANAGER: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// GPT label of the EFI system partition (init's `[boot] esp_label`).
pub const ESP_LABEL: &str = berth_layout::labels::ESP;
/// GPT label of the state partition (init's `[storage] label`).
pub const STATE_LABEL: &str = berth_layout::labels::STATE;
/// Directory of the Type #2 entries (the slots) on the ESP.
pub const SLOT_DIR: &str = slots::SLOT_DIR;
/// systemd-boot's configuration: no menu (timeout 0), only our entries.
pub const LOADER_CONF: &str =
    "timeout 0\neditor no\nauto-entries no\nauto-firmware no\nconsole-mode keep\n";
const MIB: u64 = 1024 * 1024;

/// Building the disk image failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The requested ESP is too small for two slots of this UKI.
    #[error("an ESP of {esp_mib} MiB cannot hold two slots of a {uki_bytes}-byte UKI plus the boot manager (need at least {need_mib} MiB)")]
    EspTooSmall {
        /// Requested size.
        esp_mib: u64,
        /// The UKI's size.
        uki_bytes: u64,
        /// The minimum.
        need_mib: u64,
    },
    /// A size is out of range.
    #[error("{what} must be at least {min} MiB, got {got}")]
    TooSmall {
        /// Which size.
        what: &'static str,
        /// The minimum.
        min: u64,
        /// The value given.
        got: u64,
    },
    /// Reading, writing or running a tool failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What `berth-image disk` needs.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// The UKI to put in both slots.
    pub uki: PathBuf,
    /// The boot manager (`systemd-bootx64.efi`).
    pub boot_manager: PathBuf,
    /// Output raw disk image.
    pub out: PathBuf,
    /// Also write a qcow2 copy here.
    pub qcow2: Option<PathBuf>,
    /// ESP size in MiB; `None`: room for two slots of 1.5× this UKI.
    pub esp_mib: Option<u64>,
    /// Size of the state partition in the image (init grows it on first boot).
    pub state_mib: u64,
    /// Timestamp for every file-system time.
    pub source_date_epoch: u32,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct DiskReport {
    /// Size of the raw image in bytes.
    pub size: u64,
    /// ESP size in MiB.
    pub esp_mib: u64,
    /// State partition size in MiB.
    pub state_mib: u64,
    /// sha256 of the raw image.
    pub sha256: String,
}

/// A GUID (RFC 9562 version 8) derived from `seed` and a purpose, in the text form.
pub fn derive_guid(seed: &[u8], purpose: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"berth-image disk guid v1\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(seed);
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = fsutil::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The ESP size for a UKI of `uki_bytes`: two slots of an image up to 1.5× this one (an
/// upgrade may be larger), the boot manager and FAT overhead; at least 64 MiB.
pub fn auto_esp_mib(uki_bytes: u64) -> u64 {
    let need = uki_bytes * 3 + 8 * MIB;
    need.div_ceil(MIB).max(64)
}

fn min_esp_mib(uki_bytes: u64, boot_manager_bytes: u64) -> u64 {
    // Two slots, the boot manager, ~3% FAT32 overhead and 2 MiB slack.
    let need = 2 * uki_bytes + boot_manager_bytes;
    (need + need / 32 + 2 * MIB).div_ceil(MIB).max(40)
}

/// Builds the disk image.
pub fn build(opts: &DiskOptions) -> Result<DiskReport, DiskError> {
    let uki_bytes = std::fs::metadata(&opts.uki)
        .map_err(io_err("stat", &opts.uki))?
        .len();
    let bm_bytes = std::fs::metadata(&opts.boot_manager)
        .map_err(io_err("stat", &opts.boot_manager))?
        .len();
    let esp_mib = opts.esp_mib.unwrap_or_else(|| auto_esp_mib(uki_bytes));
    let need_mib = min_esp_mib(uki_bytes, bm_bytes);
    if esp_mib < need_mib {
        return Err(DiskError::EspTooSmall {
            esp_mib,
            uki_bytes,
            need_mib,
        });
    }
    if opts.state_mib < 16 {
        return Err(DiskError::TooSmall {
            what: "the state partition",
            min: 16,
            got: opts.state_mib,
        });
    }
    let (_, uki_sha) = fsutil::sha256_file(&opts.uki)?;
    let seed = uki_sha.as_bytes();
    let epoch = opts.source_date_epoch.to_string();

    let dir = opts.out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let work = tempfile::Builder::new()
        .prefix(".berth-disk-")
        .tempdir_in(dir)
        .map_err(io_err("create a work directory in", dir))?;

    // The ESP, as its own FAT image.
    let esp = work.path().join("esp.img");
    let volid = &derive_guid(seed, "esp volume id").replace('-', "")[..8];
    fsutil::run(
        Command::new("mkfs.vfat")
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args([
                "--invariant",
                "-F",
                "32",
                "-n",
                ESP_LABEL,
                "-i",
                volid,
                "-C",
            ])
            .arg(&esp)
            .arg((esp_mib * 1024).to_string()),
    )?;
    let mtools = |args: &[&str], files: &[&Path]| -> Result<(), FsError> {
        let mut cmd = Command::new(args[0]);
        cmd.env("SOURCE_DATE_EPOCH", &epoch)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&esp)
            .args(files)
            .args(&args[1..]);
        fsutil::run(&mut cmd).map(|_| ())
    };
    let boot_dir = Path::new(slots::BOOT_MANAGER)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    mtools(
        &[
            "mmd",
            "::EFI",
            &format!("::{boot_dir}"),
            &format!("::{SLOT_DIR}"),
            "::loader",
        ],
        &[],
    )?;
    let loader_conf = work.path().join("loader.conf");
    std::fs::write(&loader_conf, LOADER_CONF).map_err(io_err("write", &loader_conf))?;
    mtools(
        &["mcopy", &format!("::{}", slots::BOOT_MANAGER)],
        &[&opts.boot_manager],
    )?;
    mtools(&["mcopy", "::loader/loader.conf"], &[&loader_conf])?;
    // The same UKI in both slots: slot a boots first, slot b is the fallback.
    for (generation, slot) in slots::FIRST_ENTRIES {
        let entry = Entry::name(generation, slot);
        mtools(&["mcopy", &format!("::{SLOT_DIR}/{entry}")], &[&opts.uki])?;
    }

    // The state partition: a small ext4, labelled like the partition (what init's mke2fs
    // would have made), so first boot only grows it.
    let state = work.path().join("state.img");
    File::create(&state)
        .and_then(|f| f.set_len(opts.state_mib * MIB))
        .map_err(io_err("create", &state))?;
    let fs_uuid = derive_guid(seed, "state ext4 uuid");
    fsutil::run(
        Command::new("mke2fs")
            .env("E2FSPROGS_FAKE_TIME", &epoch)
            .env("SOURCE_DATE_EPOCH", &epoch)
            .args(["-q", "-F", "-t", "ext4", "-L", STATE_LABEL, "-U", &fs_uuid])
            .arg("-E")
            .arg(format!("hash_seed={fs_uuid},root_owner=0:0"))
            .arg(&state),
    )?;

    // The disk: 1 MiB for the primary GPT, ESP, state, 1 MiB for the backup GPT.
    let total = MIB + esp_mib * MIB + opts.state_mib * MIB + MIB;
    let tmp_disk = work.path().join("disk.raw");
    File::create(&tmp_disk)
        .and_then(|f| f.set_len(total))
        .map_err(io_err("create", &tmp_disk))?;
    let esp_start = MIB / 512;
    let state_start = esp_start + esp_mib * MIB / 512;
    let state_end = state_start + opts.state_mib * MIB / 512 - 1;
    fsutil::run(
        Command::new("sgdisk")
            .arg("--clear")
            .arg(format!("--disk-guid={}", derive_guid(seed, "disk")))
            .arg(format!("--new=1:{esp_start}:{}", state_start - 1))
            .arg("--typecode=1:ef00")
            .arg(format!("--change-name=1:{ESP_LABEL}"))
            .arg(format!("--partition-guid=1:{}", derive_guid(seed, "esp")))
            .arg(format!("--new=2:{state_start}:{state_end}"))
            .arg("--typecode=2:8300")
            .arg(format!("--change-name=2:{STATE_LABEL}"))
            .arg(format!("--partition-guid=2:{}", derive_guid(seed, "state")))
            .arg(&tmp_disk),
    )?;
    copy_at(&esp, &tmp_disk, esp_start * 512)?;
    copy_at(&state, &tmp_disk, state_start * 512)?;
    fsutil::run(Command::new("sgdisk").arg("--verify").arg(&tmp_disk))?;
    let (size, sha256) = fsutil::sha256_file(&tmp_disk)?;

    if let Some(qcow2) = &opts.qcow2 {
        let tmp_qcow2 = work.path().join("disk.qcow2");
        fsutil::run(
            Command::new("qemu-img")
                .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                .arg(&tmp_disk)
                .arg(&tmp_qcow2),
        )?;
        std::fs::rename(&tmp_qcow2, qcow2).map_err(io_err("rename into", qcow2))?;
    }
    std::fs::rename(&tmp_disk, &opts.out).map_err(io_err("rename into", &opts.out))?;
    Ok(DiskReport {
        size,
        esp_mib,
        state_mib: opts.state_mib,
        sha256,
    })
}

/// Copies the whole of `src` into `dest` at byte `offset`.
fn copy_at(src: &Path, dest: &Path, offset: u64) -> Result<(), FsError> {
    let mut input = File::open(src).map_err(io_err("open", src))?;
    let mut out = OpenOptions::new()
        .write(true)
        .open(dest)
        .map_err(io_err("open", dest))?;
    out.seek(SeekFrom::Start(offset))
        .map_err(io_err("seek in", dest))?;
    std::io::copy(&mut input, &mut out).map_err(io_err("write", dest))?;
    out.flush().map_err(io_err("write", dest))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_are_stable_and_distinct() {
        let a = derive_guid(b"x", "esp");
        assert_eq!(a, derive_guid(b"x", "esp"));
        assert_ne!(a, derive_guid(b"x", "state"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn esp_sizes() {
        let uki = 34 * MIB;
        assert!(auto_esp_mib(uki) >= min_esp_mib(uki, 200_000));
        assert_eq!(auto_esp_mib(1), 64);
    }

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("--version").output().is_ok()
    }

    /// A real (small) disk image: GPT verifies, labels are right, two builds are identical,
    /// the ESP holds the boot manager, loader.conf and both slots.
    #[test]
    fn builds_a_reproducible_disk() {
        for tool in ["mkfs.vfat", "mcopy", "sgdisk", "mke2fs", "qemu-img"] {
            if !have(tool) {
                eprintln!("SKIP builds_a_reproducible_disk: {tool} not installed");
                return;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let uki = dir.path().join("berth.efi");
        std::fs::write(&uki, vec![0x42; 300_000]).unwrap();
        let bm = dir.path().join("bootx64.efi");
        std::fs::write(&bm, vec![0x24; 10_000]).unwrap();
        let opts = |name: &str| DiskOptions {
            uki: uki.clone(),
            boot_manager: bm.clone(),
            out: dir.path().join(format!("{name}.raw")),
            qcow2: Some(dir.path().join(format!("{name}.qcow2"))),
            esp_mib: Some(40),
            state_mib: 16,
            source_date_epoch: 1_700_000_000,
        };
        let started = std::time::Instant::now();
        let a = build(&opts("a")).unwrap();
        eprintln!("disk image built in {:?}", started.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let b = build(&opts("b")).unwrap();
        assert_eq!(a.sha256, b.sha256, "two builds differ");
        assert_eq!(a.size, (1 + 40 + 16 + 1) * MIB);
        let raw = dir.path().join("a.raw");
        let print = fsutil::run(Command::new("sgdisk").arg("--print").arg(&raw)).unwrap();
        let text = String::from_utf8_lossy(&print.stdout);
        assert!(
            text.contains(ESP_LABEL) && text.contains(STATE_LABEL),
            "{text}"
        );
        let listing = fsutil::run(
            Command::new("mdir")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-b")
                .arg("-i")
                .arg(format!("{}@@1M", raw.display()))
                .arg(format!("::{SLOT_DIR}")),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(
            text.contains("berth-1-a.efi") && text.contains("berth-0-b.efi"),
            "{text}"
        );
        assert!(dir.path().join("a.qcow2").exists());
    }
}
