//! The pseudo filesystems init mounts, as one declarative table per stage.
//!
//! Mounting is idempotent: a target that already is a mount point (stage 1 moved `/proc`,
//! `/sys` and `/dev` into the new root) is skipped, so stage 2 also works when booted without
//! the initramfs stage.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Errors mounting or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point cannot be created.
    #[error("cannot create mount point {path}: {source}", path = path.display())]
    MountPoint {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `mount(2)` failed.
    #[error("cannot mount {fstype} on {target}: {errno}", target = target.display())]
    Mount {
        /// Filesystem type.
        fstype: String,
        /// Where.
        target: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
    /// Moving a mount failed.
    #[error("cannot move mount {from} to {to}: {errno}", from = from.display(), to = to.display())]
    Move {
        /// Old place.
        from: PathBuf,
        /// New place.
        to: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// One mount in a table.
#[derive(Debug, Clone, Copy)]
pub struct MountSpec {
    /// Source (device or a name for pseudo filesystems).
    pub source: &'static str,
    /// Mount point.
    pub target: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem options.
    pub data: &'static str,
    /// Mode of the mount point if init has to create it.
    pub dir_mode: u32,
    /// When the entry applies: some filesystems exist only on some machines or kernels.
    pub when: When,
}

/// Condition of a table entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Always mounted; a failure is reported.
    Always,
    /// Mounted only when the kernel knows the filesystem type (`/proc/filesystems`, after
    /// loading its module if there is one); otherwise skipped quietly.
    FsAvailable,
    /// Mounted only when this path exists (e.g. `/sys/firmware/efi` on UEFI machines).
    PathExists(&'static str),
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);
const NOSUID_NODEV_NOEXEC: MsFlags = NOSUID_NODEV.union(MsFlags::MS_NOEXEC);

const PROC: MountSpec = MountSpec {
    source: "proc",
    target: "/proc",
    fstype: "proc",
    flags: NOSUID_NODEV_NOEXEC,
    data: "",
    dir_mode: 0o555,
    when: When::Always,
};
const SYS: MountSpec = MountSpec {
    source: "sysfs",
    target: "/sys",
    fstype: "sysfs",
    flags: NOSUID_NODEV_NOEXEC,
    data: "",
    dir_mode: 0o555,
    when: When::Always,
};
const DEV: MountSpec = MountSpec {
    source: "devtmpfs",
    target: "/dev",
    fstype: "devtmpfs",
    flags: MsFlags::MS_NOSUID,
    data: "mode=0755",
    dir_mode: 0o755,
    when: When::Always,
};

/// Stage 1 (initramfs): just enough to load modules and find the loop device.
pub const STAGE1_MOUNTS: &[MountSpec] = &[PROC, SYS, DEV];

/// Stage 2 (real root), in order (parents before children). `/var` is not here: it is the
/// state disk or a tmpfs, decided by [`crate::state_disk`] once block devices are known.
pub const STAGE2_MOUNTS: &[MountSpec] = &[
    PROC,
    SYS,
    DEV,
    MountSpec {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: "mode=0620,ptmxmode=0666,gid=5",
        dir_mode: 0o755,
        when: When::Always,
    },
    MountSpec {
        source: "shm",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        dir_mode: 0o1777,
        when: When::Always,
    },
    MountSpec {
        source: "mqueue",
        target: "/dev/mqueue",
        fstype: "mqueue",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        dir_mode: 0o1777,
        when: When::FsAvailable,
    },
    MountSpec {
        source: "run",
        target: "/run",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=0755",
        dir_mode: 0o755,
        when: When::Always,
    },
    MountSpec {
        source: "tmp",
        target: "/tmp",
        fstype: "tmpfs",
        flags: NOSUID_NODEV,
        data: "mode=1777",
        dir_mode: 0o1777,
        when: When::Always,
    },
    MountSpec {
        source: "securityfs",
        target: "/sys/kernel/security",
        fstype: "securityfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: "",
        dir_mode: 0o755,
        when: When::FsAvailable,
    },
    MountSpec {
        source: "bpf",
        target: "/sys/fs/bpf",
        fstype: "bpf",
        flags: NOSUID_NODEV_NOEXEC,
        data: "mode=0700",
        dir_mode: 0o700,
        when: When::FsAvailable,
    },
    MountSpec {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        // favordynmods: moving a process into a cgroup (every container start) does not
        // wait for an RCU grace period (7-15 ms under TCG); forks and exits take the
        // cgroup rwsem's slow path instead, a small constant cost. Dropped on kernels
        // before 6.0, which reject it (OPTIONAL_OPTIONS).
        data: "nsdelegate,favordynmods",
        dir_mode: 0o755,
        when: When::Always,
    },
];

/// Mounted after the modules (efivarfs is a module in Debian's kernels) and only on UEFI
/// machines: the boot-slot logic reads and writes EFI variables through it.
pub const EFIVARFS: MountSpec = MountSpec {
    source: "efivarfs",
    target: "/sys/firmware/efi/efivars",
    fstype: "efivarfs",
    flags: NOSUID_NODEV_NOEXEC,
    data: "",
    dir_mode: 0o755,
    when: When::PathExists("/sys/firmware/efi"),
};

/// Symlinks stage 2 creates in `/dev` when missing (there is no udev).
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("pts/ptmx", "/dev/ptmx"),
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// What [`mount`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounted {
    /// Mounted now.
    Mounted,
    /// The target already was a mount point.
    AlreadyMounted,
    /// The entry's condition does not hold on this machine.
    NotApplicable,
}

/// Whether `path` is a mount point: its device differs from its parent's (or it is `/`).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let parent = path.join("..");
    match std::fs::metadata(&parent) {
        Ok(parent_meta) => meta.dev() != parent_meta.dev() || meta.ino() == parent_meta.ino(),
        Err(_) => false,
    }
}

/// Mounts one table entry, creating the mount point if needed.
pub fn mount(spec: &MountSpec) -> Result<Mounted, MountError> {
    let applies = match spec.when {
        When::Always => true,
        When::FsAvailable => filesystem_available(spec.fstype),
        When::PathExists(path) => Path::new(path).exists(),
    };
    if !applies {
        return Ok(Mounted::NotApplicable);
    }
    let target = Path::new(spec.target);
    if is_mount_point(target) {
        return Ok(Mounted::AlreadyMounted);
    }
    if !target.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(spec.dir_mode)
            .create(target)
            .map_err(|source| MountError::MountPoint {
                path: target.to_path_buf(),
                source,
            })?;
    }
    let data = (!spec.data.is_empty()).then_some(spec.data);
    let mount = |data: Option<&str>| {
        nix::mount::mount(
            Some(spec.source),
            target,
            Some(spec.fstype),
            spec.flags,
            data,
        )
    };
    let mut result = mount(data);
    if result == Err(Errno::EINVAL) {
        if let Some(required) = without_optional_options(spec.data) {
            result = mount((!required.is_empty()).then_some(required.as_str()));
        }
    }
    match result {
        Ok(()) => Ok(Mounted::Mounted),
        Err(Errno::EBUSY) => Ok(Mounted::AlreadyMounted),
        Err(errno) => Err(MountError::Mount {
            fstype: spec.fstype.to_string(),
            target: target.to_path_buf(),
            errno,
        }),
    }
}

/// Mount options an older kernel may not know (cgroup2's `favordynmods` came in 6.0): a
/// mount refused with EINVAL is tried once more without them.
const OPTIONAL_OPTIONS: &[&str] = &["favordynmods"];

/// `data` without [`OPTIONAL_OPTIONS`], or `None` when it has none of them.
fn without_optional_options(data: &str) -> Option<String> {
    let kept: Vec<&str> = data
        .split(',')
        .filter(|o| !OPTIONAL_OPTIONS.contains(o))
        .collect();
    (kept.len() != data.split(',').count()).then(|| kept.join(","))
}

/// Whether the running kernel knows filesystem type `fstype` (`/proc/filesystems`).
pub fn filesystem_available(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|text| filesystems_list(&text, fstype))
}

/// Whether `/proc/filesystems` text lists `fstype` (lines are `[nodev]\t<name>`).
fn filesystems_list(text: &str, fstype: &str) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().last() == Some(fstype))
}

/// Mounts a whole table, returning each entry's result (callers decide what is fatal).
pub fn mount_table(table: &[MountSpec]) -> Vec<(&MountSpec, Result<Mounted, MountError>)> {
    table.iter().map(|spec| (spec, mount(spec))).collect()
}

/// Creates the missing [`DEV_SYMLINKS`]; errors are ignored (they are conveniences).
/// devtmpfs's own `/dev/ptmx` node is replaced by the `pts/ptmx` link once devpts is
/// mounted (with `ptmxmode=0666`), as devpts.rst recommends.
pub fn create_dev_symlinks() {
    let ptmx = Path::new("/dev/ptmx");
    if is_mount_point(Path::new("/dev/pts"))
        && std::fs::symlink_metadata(ptmx).is_ok_and(|m| !m.file_type().is_symlink())
    {
        let _ = std::fs::remove_file(ptmx);
    }
    for (target, link) in DEV_SYMLINKS {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
}

/// Moves the mount at `from` to `to` (`MS_MOVE`).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), MountError> {
    nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(
        |errno| MountError::Move {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            errno,
        },
    )
}

/// Mount points listed in a `/proc/self/mountinfo` text, in mount order. Octal escapes
/// (`\040` for a space) are decoded.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything but `/` in reverse mount order, lazily when a plain unmount fails
/// (something still holds it). Returns the mount points that could not be unmounted.
pub fn unmount_all() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut failed = Vec::new();
    for target in parse_mountinfo(&text).into_iter().rev() {
        if target == Path::new("/") {
            continue;
        }
        if nix::mount::umount2(&target, MntFlags::empty()).is_err()
            && nix::mount::umount2(&target, MntFlags::MNT_DETACH).is_err()
        {
            failed.push(target);
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_targets_in_order() {
        let text = "\
22 1 254:0 / / ro,relatime shared:1 - erofs /dev/loop0 ro
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw
24 22 0:5 / /dev rw,nosuid shared:3 - devtmpfs devtmpfs rw
25 24 0:22 / /mnt/with\\040space rw - tmpfs tmpfs rw
";
        assert_eq!(
            parse_mountinfo(text),
            ["/", "/proc", "/dev", "/mnt/with space"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn stage2_table_has_parents_first() {
        for (i, spec) in STAGE2_MOUNTS.iter().enumerate() {
            for later in &STAGE2_MOUNTS[i + 1..] {
                assert!(
                    !spec.target.starts_with(&format!("{}/", later.target)),
                    "{} before {}",
                    spec.target,
                    later.target
                );
            }
        }
    }

    #[test]
    fn proc_filesystems_lookup() {
        let text = "nodev\tsysfs\nnodev\tbpf\n\text4\nnodev\tmqueue\n";
        assert!(filesystems_list(text, "ext4"));
        assert!(filesystems_list(text, "bpf"));
        assert!(!filesystems_list(text, "efivarfs"));
        assert!(!filesystems_list(text, "nodev"));
    }

    #[test]
    fn table_covers_the_early_mounts() {
        let targets: Vec<&str> = STAGE2_MOUNTS.iter().map(|m| m.target).collect();
        for t in [
            "/proc",
            "/sys",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/run",
            "/tmp",
            "/sys/kernel/security",
            "/sys/fs/bpf",
            "/sys/fs/cgroup",
        ] {
            assert!(targets.contains(&t), "{t} missing");
        }
        assert!(
            !targets.contains(&"/var"),
            "/var belongs to the storage stage"
        );
        let cgroup = STAGE2_MOUNTS
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .unwrap();
        assert_eq!(cgroup.data, "nsdelegate,favordynmods");
        assert_eq!(
            without_optional_options(cgroup.data).as_deref(),
            Some("nsdelegate")
        );
        assert_eq!(without_optional_options("mode=0755"), None);
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
        assert!(!is_mount_point(Path::new("/nonexistent-berth-test")));
    }
}
