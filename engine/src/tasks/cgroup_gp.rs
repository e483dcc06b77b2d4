//! Starting the kernel's cgroup-migration grace period early, off the container's path.
//!
//! Moving a process into a cgroup by pid (`cgroup.procs`, which the executor does for the
//! container's first process on every hierarchy) takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. That per-CPU rwsem switches its readers (every
//! fork and exit) to the slow path first, through `rcu_sync_enter()`, which waits a whole RCU
//! grace period unless a writer passed one moments ago: 7–15 ms on this 2-core machine,
//! measured as the single largest wait of `berthctl run --rm` (perf sched: both CPUs idle
//! while the executor's intermediate process sits in `write(cgroup.procs)`). runc and
//! containerd pay it too.
//!
//! The kernel lets the next writer skip the wait while the previous grace period is still
//! fresh (`rcu_sync` stays in its passed/exit state for about one more grace period after
//! the last writer leaves). So when a task is created, berthd moves itself into the cgroup
//! it already is in — a migration that changes nothing — on a blocking thread, not awaited.
//! The grace period then runs while the shim starts (its exec and the executor's first
//! steps take a few milliseconds), and the executor's own write finds it passed or shares
//! the one in flight.
//!
//! Skipped where the wait does not exist: a cgroup2 hierarchy mounted with `favordynmods`
//! (which berth-init uses, docs/containers.md) keeps the rwsem on the slow path for good.
//! Best effort: any failure only means the executor waits as it would have.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set while a prefetch runs, so a burst of creates starts one, not one per create.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Starts the grace period on a blocking thread and returns at once.
pub fn prefetch() {
    let Some(procs) = target() else { return };
    if RUNNING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("cgroup-gp".into())
        .spawn(move || {
            let pid = std::process::id().to_string();
            if let Err(e) = std::fs::write(&procs, pid) {
                tracing::debug!(file = %procs.display(), "cgroup grace-period prefetch: {e}");
            }
            RUNNING.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        RUNNING.store(false, Ordering::Release);
    }
}

/// The `cgroup.procs` file of berthd's own cgroup on some mounted hierarchy (the rwsem is
/// global, any hierarchy does), or `None` when no prefetch is needed or possible. Computed
/// once: berthd does not move between cgroups on its own.
fn target() -> Option<PathBuf> {
    static TARGET: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    TARGET
        .get_or_init(|| {
            let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
            own_procs_file(&cgroup, &mountinfo)
        })
        .clone()
}

/// Pure part of [`target`]: `/proc/self/cgroup` and `/proc/self/mountinfo` in, the file out.
fn own_procs_file(cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let mut found = None;
    for line in mountinfo.lines() {
        // `<id> <parent> <maj:min> <root> <mount point> <options> [optional…] - <fstype>
        // <source> <super options>`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(mount_point), Some(fstype), Some(super_opts)) =
            (l.get(3), l.get(4), r.first(), r.get(2))
        else {
            continue;
        };
        if *fstype != "cgroup2" && *fstype != "cgroup" {
            continue;
        }
        let opts: Vec<&str> = super_opts.split(',').collect();
        if opts.contains(&"favordynmods") {
            // Writers on this kernel never wait for the grace period.
            return None;
        }
        if found.is_some() || *root != "/" {
            continue;
        }
        // The line of /proc/self/cgroup for this hierarchy: `0::<path>` for cgroup2,
        // `<n>:<controllers>:<path>` with one of this mount's controllers for v1.
        let path = cgroup.lines().find_map(|c| {
            let mut f = c.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let matches = if *fstype == "cgroup2" {
                controllers.is_empty()
            } else {
                controllers
                    .split(',')
                    .any(|c| !c.is_empty() && opts.contains(&c))
            };
            matches.then_some(path)
        });
        if let Some(path) = path {
            let rel = path.trim_start_matches('/');
            found = Some(
                PathBuf::from(unescape(mount_point))
                    .join(rel)
                    .join("cgroup.procs"),
            );
        }
    }
    found
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 33 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,pids
37 33 0:32 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,cpu,cpuacct
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/system.slice/berthd.service
7:cpu,cpuacct:/system.slice
0::/system.slice/berthd.service
";

    #[test]
    fn finds_the_own_cgroup_on_the_first_mounted_hierarchy() {
        assert_eq!(
            own_procs_file(HYBRID_CGROUP, HYBRID_MOUNTS),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/berthd.service/cgroup.procs"
            ))
        );
        // v1 only: the pids hierarchy (first cgroup mount) with berthd's pids path.
        let v1: String = HYBRID_MOUNTS
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            own_procs_file(HYBRID_CGROUP, &v1),
            Some(PathBuf::from(
                "/sys/fs/cgroup/pids/system.slice/berthd.service/cgroup.procs"
            ))
        );
    }

    #[test]
    fn favordynmods_needs_no_prefetch() {
        let mounts = "28 22 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n";
        assert_eq!(own_procs_file("0::/system.slice/berthd\n", mounts), None);
        let plain = mounts.replace(",favordynmods", "");
        assert_eq!(
            own_procs_file("0::/system.slice/berthd\n", &plain),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/berthd/cgroup.procs"
            ))
        );
    }

    #[test]
    fn no_cgroup_mount_no_prefetch() {
        assert_eq!(
            own_procs_file(
                HYBRID_CGROUP,
                "30 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
            ),
            None
        );
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
    }
}
