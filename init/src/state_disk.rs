//! The state disk: the one writable, persistent place of a node, mounted at `/var`.
//!
//! berth's root is a read-only image, so everything a node keeps across reboots — the engine's
//! content store and snapshots (`/var/lib/berth`), logs (`/var/log`), the node file with
//! per-node settings and secrets (`/var/etc/berth/node.toml`) — lives on one ext4 partition
//! found by its **GPT partition label** (`[storage] label`, default `BERTH_STATE`). The label is
//! the operator's consent: init checks (`e2fsck`) or, on first boot, formats (`mke2fs`) only a
//! partition that carries it, and never touches any other partition or disk. With no such
//! partition the node is diskless: `/var` is a tmpfs, and the log says so.
//!
//! Configured by the `[storage]` table of init.toml ([`StateDiskConfig`]); console lines say
//! `storage:` (operators and the QEMU tests match them). The module is not called `storage`
//! because that word also names berthd's ttrpc storage services, the snapshot metastore and
//! berthctl verbs.
//!
//! Partitions are found through sysfs (`/sys/class/block/*/uevent` has `PARTNAME=` for GPT
//! partitions), not by reading partition tables ourselves: the kernel already parsed them,
//! and there is no udev to make `/dev/disk/by-partlabel`.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::console::Console;

/// Where the state partition (or the diskless tmpfs) is mounted.
pub const MOUNT_POINT: &str = "/var";
/// The node file: per-node configuration layered over `/etc/berth/init.toml`.
pub const NODE_FILE: &str = berth_layout::paths::NODE_FILE;
/// Directories created on `/var` after mounting, with their modes.
pub const VAR_DIRS: &[(&str, u32)] = &[
    ("/var/etc", 0o755),
    ("/var/etc/berth", 0o700),
    ("/var/lib", 0o755),
    ("/var/lib/berth", 0o711),
    ("/var/log", 0o755),
];

/// Offset of the ext2/3/4 superblock magic (superblock at 1024 + `s_magic` at 56).
const EXT_MAGIC_OFFSET: u64 = 1024 + 56;
/// The ext2/3/4 magic number, little-endian on disk.
const EXT_MAGIC: [u8; 2] = [0x53, 0xEF];

/// `[storage]` in init.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateDiskConfig {
    /// GPT partition label (PARTNAME) of the state partition.
    pub label: String,
    /// After module loading, how long to keep looking for the labelled partition (slow
    /// controllers, USB) before deciding the node is diskless.
    pub wait_ms: u64,
    /// Format the labelled partition when it holds no ext4 file system (first boot).
    pub format: bool,
    /// Check the file system with `e2fsck` before mounting.
    pub fsck: bool,
    /// `mke2fs` program.
    pub mkfs_path: PathBuf,
    /// `e2fsck` program.
    pub fsck_path: PathBuf,
    /// Size of the diskless `/var` tmpfs (tmpfs `size=` syntax: bytes, k/m/g or `%` of RAM).
    pub tmpfs_size: String,
}

impl Default for StateDiskConfig {
    fn default() -> Self {
        Self {
            label: berth_layout::labels::STATE.into(),
            wait_ms: 500,
            format: true,
            fsck: true,
            mkfs_path: "/usr/sbin/mke2fs".into(),
            fsck_path: "/usr/sbin/e2fsck".into(),
            tmpfs_size: "50%".into(),
        }
    }
}

/// Errors bringing up `/var`.
#[derive(Debug, thiserror::Error)]
pub enum StateDiskError {
    /// More than one partition carries the label: refusing to guess.
    #[error("partitions {} all carry the label {label}; refusing to pick one", names.join(", "))]
    Ambiguous {
        /// The label.
        label: String,
        /// The partitions.
        names: Vec<String>,
    },
    /// Reading the partition failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The device node.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A tool could not run or failed.
    #[error("{tool} {}: {message}", device.display())]
    Tool {
        /// mke2fs or e2fsck.
        tool: &'static str,
        /// The device.
        device: PathBuf,
        /// Exit status and output.
        message: String,
    },
    /// `mount(2)` failed.
    #[error("cannot mount {} ({fstype}) on {MOUNT_POINT}: {errno}", device.display())]
    Mount {
        /// Device or tmpfs.
        device: PathBuf,
        /// File-system type.
        fstype: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// A partition found in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Kernel name (`vdb1`).
    pub name: String,
    /// Device node (`/dev/vdb1`).
    pub device: PathBuf,
}

/// How `/var` came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The state partition is mounted.
    Disk {
        /// The partition.
        partition: Partition,
        /// It was formatted now (first boot).
        formatted: bool,
        /// What e2fsck said, when it ran.
        fsck: Option<String>,
    },
    /// No usable partition: `/var` is a tmpfs.
    Diskless {
        /// Why (no labelled partition, or what failed).
        reason: String,
    },
}

/// Values of a sysfs `uevent` file (`KEY=value` lines).
pub fn uevent_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
}

/// Partitions under `sys_class_block` (normally `/sys/class/block`) whose GPT label is `label`.
pub fn find_labelled(sys_class_block: &Path, label: &str) -> Vec<Partition> {
    let Ok(entries) = std::fs::read_dir(sys_class_block) else {
        return Vec::new();
    };
    let mut found: Vec<Partition> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("uevent")).ok()?;
            if uevent_value(&text, "DEVTYPE") != Some("partition")
                || uevent_value(&text, "PARTNAME") != Some(label)
            {
                return None;
            }
            let name = uevent_value(&text, "DEVNAME")
                .map(str::to_string)
                .unwrap_or_else(|| entry.file_name().to_string_lossy().into_owned());
            Some(Partition {
                device: Path::new("/dev").join(&name),
                name,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Whether the device holds an ext2/3/4 superblock.
pub fn has_ext_superblock(device: &Path) -> Result<bool, StateDiskError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(device).map_err(|source| StateDiskError::Read {
        path: device.into(),
        source,
    })?;
    let mut magic = [0u8; 2];
    match file.read_exact_at(&mut magic, EXT_MAGIC_OFFSET) {
        Ok(()) => Ok(magic == EXT_MAGIC),
        // Smaller than a superblock: certainly not ext4.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(source) => Err(StateDiskError::Read {
            path: device.into(),
            source,
        }),
    }
}

/// What an `e2fsck` exit status means (e2fsck(8) "EXIT CODE"; the bits combine).
pub fn fsck_verdict(code: i32) -> Result<&'static str, &'static str> {
    match code {
        0 => Ok("clean"),
        1 => Ok("errors corrected"),
        2 | 3 => Ok("errors corrected (reboot advised)"),
        c if c & 4 != 0 => Err("errors left uncorrected"),
        c if c & 8 != 0 => Err("operational error"),
        c if c & 16 != 0 => Err("usage or syntax error"),
        c if c & 32 != 0 => Err("cancelled"),
        _ => Err("shared library error"),
    }
}

fn run(
    tool: &'static str,
    program: &Path,
    args: &[&str],
    device: &Path,
) -> Result<(i32, String), StateDiskError> {
    let output = Command::new(program)
        .args(args)
        .arg(device)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| StateDiskError::Tool {
            tool,
            device: device.into(),
            message: format!("cannot run {}: {err}", program.display()),
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok((output.status.code().unwrap_or(-1), text))
}

/// Checks the file system: `e2fsck -p` (preen: safe automatic fixes); when that leaves
/// errors, `e2fsck -y -f` once, because an edge node has nobody to answer questions. Returns
/// the verdict for the log.
pub fn check(config: &StateDiskConfig, device: &Path) -> Result<String, StateDiskError> {
    let (code, out) = run("e2fsck", &config.fsck_path, &["-p"], device)?;
    match fsck_verdict(code) {
        Ok(verdict) => Ok(verdict.to_string()),
        Err(_) => {
            let (code2, out2) = run("e2fsck", &config.fsck_path, &["-y", "-f"], device)?;
            match fsck_verdict(code2) {
                Ok(verdict) => Ok(format!("{verdict} by a full check after `e2fsck -p` exited {code}")),
                Err(why) => Err(StateDiskError::Tool {
                    tool: "e2fsck",
                    device: device.into(),
                    message: format!("{why} (exit status {code2}; `e2fsck -p` said: {out}; `e2fsck -y -f` said: {out2})"),
                }),
            }
        }
    }
}

/// Formats the partition as ext4, labelled like the partition (`-F`: the GPT label is the
/// consent, and there is no terminal to ask).
pub fn format(config: &StateDiskConfig, device: &Path) -> Result<(), StateDiskError> {
    let label: String = config.label.chars().take(16).collect();
    let (code, out) = run(
        "mke2fs",
        &config.mkfs_path,
        &["-q", "-F", "-t", "ext4", "-L", &label],
        device,
    )?;
    if code == 0 {
        Ok(())
    } else {
        Err(StateDiskError::Tool {
            tool: "mke2fs",
            device: device.into(),
            message: format!("exit status {code}: {out}"),
        })
    }
}

fn mount(source: &Path, fstype: &'static str, data: Option<&str>) -> Result<(), StateDiskError> {
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(MOUNT_POINT);
    nix::mount::mount(
        Some(source),
        MOUNT_POINT,
        Some(fstype),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        data,
    )
    .map_err(|errno| StateDiskError::Mount {
        device: source.into(),
        fstype,
        errno,
    })
}

/// Brings up `/var`: waits up to `wait_ms` for the labelled partition, checks or formats
/// it, mounts it; on any failure (or with no such partition) mounts a tmpfs instead. Every
/// decision is reported on `console`. Never fails: a node without its disk still comes up.
pub fn setup(config: &StateDiskConfig, console: Console) -> Outcome {
    let outcome = match find_with_wait(config) {
        Ok(Some(partition)) => match prepare_and_mount(config, &partition, console) {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Diskless {
                reason: err.to_string(),
            },
        },
        Ok(None) => Outcome::Diskless {
            reason: format!("no partition labelled {}", config.label),
        },
        Err(err) => Outcome::Diskless {
            reason: err.to_string(),
        },
    };
    if let Outcome::Diskless { reason } = &outcome {
        let size = format!("mode=0755,size={}", config.tmpfs_size);
        if let Err(err) = mount(Path::new("var"), "tmpfs", Some(&size)) {
            console.error(&format!("storage: {err}; /var stays read-only"));
        }
        if reason.starts_with("no partition labelled") {
            console.info(&format!(
                "storage: {reason}: diskless node, /var is a tmpfs (lost at power-off)"
            ));
        } else {
            console.error(&format!(
                "storage: {reason}; diskless node, /var is a tmpfs (lost at power-off)"
            ));
        }
    }
    for (dir, mode) in VAR_DIRS {
        if let Err(err) = std::fs::DirBuilder::new().mode(*mode).create(dir) {
            if err.kind() != std::io::ErrorKind::AlreadyExists {
                console.warn(&format!("storage: cannot create {dir}: {err}"));
            }
        }
    }
    outcome
}

fn find_with_wait(config: &StateDiskConfig) -> Result<Option<Partition>, StateDiskError> {
    let deadline = Instant::now() + Duration::from_millis(config.wait_ms);
    loop {
        let mut found = find_labelled(Path::new("/sys/class/block"), &config.label);
        match found.len() {
            0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            0 => return Ok(None),
            1 => {
                let partition = found.remove(0);
                // devtmpfs creates the node as the kernel adds the device; give it a moment.
                let node_deadline = Instant::now() + Duration::from_secs(2);
                while !partition.device.exists() && Instant::now() < node_deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(Some(partition));
            }
            _ => {
                return Err(StateDiskError::Ambiguous {
                    label: config.label.clone(),
                    names: found.into_iter().map(|p| p.name).collect(),
                })
            }
        }
    }
}

fn prepare_and_mount(
    config: &StateDiskConfig,
    partition: &Partition,
    console: Console,
) -> Result<Outcome, StateDiskError> {
    let device = &partition.device;
    let mut formatted = false;
    let mut fsck = None;
    // First boot after `dd` onto a larger disk: grow the partition (never another one).
    let grown = crate::growpart::grow_logged(&partition.name, &config.label, console);
    if has_ext_superblock(device)? {
        if config.fsck {
            let started = Instant::now();
            let verdict = check(config, device)?;
            console.info(&format!(
                "storage: e2fsck {}: {verdict} ({} ms)",
                device.display(),
                started.elapsed().as_millis()
            ));
            fsck = Some(verdict);
        }
    } else if config.format {
        console.notice(&format!(
            "storage: formatting {} (partition label {}) as ext4: no file system on it yet",
            device.display(),
            config.label
        ));
        let started = Instant::now();
        format(config, device)?;
        console.info(&format!(
            "storage: formatted {} in {} ms",
            device.display(),
            started.elapsed().as_millis()
        ));
        formatted = true;
    } else {
        return Err(StateDiskError::Tool {
            tool: "mke2fs",
            device: device.clone(),
            message: "no ext4 file system on it and [storage] format = false".into(),
        });
    }
    mount(device, "ext4", None)?;
    if grown && !formatted {
        crate::growpart::resize_fs_logged(device, console);
    }
    console.info(&format!(
        "storage: {} (label {}) mounted on {MOUNT_POINT}",
        device.display(),
        config.label
    ));
    Ok(Outcome::Disk {
        partition: partition.clone(),
        formatted,
        fsck,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_entry(root: &Path, name: &str, uevent: &str) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("uevent"), uevent).unwrap();
    }

    #[test]
    fn finds_only_partitions_with_the_label() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        block_entry(
            root,
            "vda",
            "MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=1\n",
        );
        block_entry(
            root,
            "vdb",
            "MAJOR=254\nMINOR=16\nDEVNAME=vdb\nDEVTYPE=disk\n",
        );
        block_entry(
            root,
            "vdb1",
            "MAJOR=254\nMINOR=17\nDEVNAME=vdb1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=BERTH_STATE\n",
        );
        block_entry(root, "vdb2", "MAJOR=254\nMINOR=18\nDEVNAME=vdb2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=BERTH_STATE_OLD\n");
        block_entry(
            root,
            "vdc1",
            "MAJOR=254\nMINOR=33\nDEVNAME=vdc1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=data\n",
        );
        assert_eq!(
            find_labelled(root, berth_layout::labels::STATE),
            vec![Partition {
                name: "vdb1".into(),
                device: "/dev/vdb1".into()
            }]
        );
        assert!(find_labelled(root, "nothing").is_empty());
        // A whole disk never matches, even if some tool wrote a PARTNAME-like line.
        block_entry(
            root,
            "vdd",
            "DEVNAME=vdd\nDEVTYPE=disk\nPARTNAME=BERTH_STATE\n",
        );
        assert_eq!(find_labelled(root, berth_layout::labels::STATE).len(), 1);
    }

    #[test]
    fn uevent_values_match_whole_keys() {
        let text = "PARTN=1\nPARTNAME=x\n";
        assert_eq!(uevent_value(text, "PARTNAME"), Some("x"));
        assert_eq!(uevent_value(text, "PARTN"), Some("1"));
        assert_eq!(uevent_value(text, "PART"), None);
    }

    #[test]
    fn ext_superblock_detection() {
        let dir = tempfile::tempdir().unwrap();
        let blank = dir.path().join("blank");
        std::fs::write(&blank, vec![0u8; 4096]).unwrap();
        assert!(!has_ext_superblock(&blank).unwrap());
        let tiny = dir.path().join("tiny");
        std::fs::write(&tiny, [0u8; 10]).unwrap();
        assert!(!has_ext_superblock(&tiny).unwrap());
        let mut ext = vec![0u8; 4096];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        let fake = dir.path().join("ext");
        std::fs::write(&fake, ext).unwrap();
        assert!(has_ext_superblock(&fake).unwrap());
        assert!(has_ext_superblock(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn formats_and_checks_a_real_image_file() {
        let config = StateDiskConfig::default();
        if !config.mkfs_path.is_file() || !config.fsck_path.is_file() {
            eprintln!("SKIP formats_and_checks_a_real_image_file: mke2fs/e2fsck not installed (e2fsprogs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("state.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        assert!(!has_ext_superblock(&image).unwrap());
        format(&config, &image).unwrap();
        assert!(has_ext_superblock(&image).unwrap());
        assert_eq!(check(&config, &image).unwrap(), "clean");
    }

    #[test]
    fn fsck_exit_codes() {
        assert_eq!(fsck_verdict(0), Ok("clean"));
        assert!(fsck_verdict(1).is_ok());
        assert!(fsck_verdict(2).is_ok());
        assert_eq!(fsck_verdict(4), Err("errors left uncorrected"));
        assert_eq!(fsck_verdict(12), Err("errors left uncorrected"));
        assert_eq!(fsck_verdict(8), Err("operational error"));
    }
}
