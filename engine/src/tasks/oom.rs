//! OOM kills of a container, from its cgroup v2 `memory.events`.
//!
//! The kernel counts every OOM kill inside a cgroup in `memory.events` (`oom_kill N`; v1:
//! `memory.oom_control`). The shim reads the container's counter when the init exits, before
//! anything can remove the cgroup, and records it with the exit (`ExitRecord::oom_kills`):
//! Tasks.Wait and Tasks.Get then carry `oom_killed` (CRI's `reason = OOMKilled` is a read,
//! not an event race), and berthd publishes `/tasks/oom` ahead of `/tasks/exit`: the exit
//! (137 for the usual SIGKILL) comes with its cause. containerd's shim watches the file with
//! inotify instead and also reports kills of processes other than the init while the
//! container runs; berth reports those only when the container exits.

use std::path::{Path, PathBuf};

/// `memory.events` of the container's cgroup `cgroup` ([`super::cgroups`]).
pub fn memory_events_path(cgroup_root: &Path, cgroup: &str) -> PathBuf {
    cgroup_root
        .join(cgroup.trim_start_matches('/'))
        .join("memory.events")
}

/// The `oom_kill` counter of a `memory.events` text (`None` when the line is missing).
pub fn oom_kills(memory_events: &str) -> Option<u64> {
    memory_events.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}

/// The OOM kill count of the container in cgroup `cgroup`: `memory.events` on a cgroup v2
/// host, `memory.oom_control` of the v1 memory hierarchy otherwise (`None`: no cgroup).
pub fn container_oom_kills(cgroup: &str) -> Option<u64> {
    let root = Path::new("/sys/fs/cgroup");
    if let Ok(text) = std::fs::read_to_string(memory_events_path(root, cgroup)) {
        return oom_kills(&text);
    }
    let v1 = root
        .join("memory")
        .join(cgroup.trim_start_matches('/'))
        .join("memory.oom_control");
    oom_kills(&std::fs::read_to_string(v1).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_oom_kill_counter() {
        let text = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills(text), Some(1));
        assert_eq!(oom_kills("low 0\noom 0\n"), None);
        assert_eq!(
            memory_events_path(
                Path::new("/sys/fs/cgroup"),
                "/containers.slice/default-x/init"
            ),
            Path::new("/sys/fs/cgroup/containers.slice/default-x/init/memory.events")
        );
    }
}
