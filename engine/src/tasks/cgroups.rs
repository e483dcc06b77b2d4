//! Where a container's processes live in the cgroup tree, one answer for every reader.
//!
//! By default berthd puts a container in `containers.slice/<ns>-<id>/init` and its shim next
//! to it in `…/shim` (docs/containers.md). A spec may name another cgroup in
//! `linux.cgroupsPath` — kubelet's cgroupfs parent through berth-cri, e.g.
//! `/kubepods/burstable/pod<uid>/<id>` — so the pod's QoS class, pod-level accounting and
//! kubelet's cgroup garbage collection see it; the executor (libcontainer or runc) creates it
//! there. The shim stays in `containers.slice/<ns>-<id>/shim` either way, outside the
//! container's limits and outside kubelet's tree.
//!
//! The cgroup is read back from the bundle's `config.json` by everyone who needs it after the
//! executor ran: the shim's pids listing, berthd's metrics, the OOM counter at exit, and the
//! cleanup ([`remove`]). A relative `cgroupsPath` is taken from the hierarchy's root, as
//! libcontainer's cgroupfs manager does.

use std::path::Path;

/// The cgroup berthd gives a container whose spec names none.
pub fn default_path(ns: &str, id: &str) -> String {
    format!("/containers.slice/{ns}-{id}/init")
}

/// The container's cgroup from a spec's JSON (`linux.cgroupsPath`, absolute), else the
/// default.
pub fn of_spec(spec: &[u8], ns: &str, id: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(spec).unwrap_or_default();
    match v["linux"]["cgroupsPath"].as_str() {
        Some(p) if !p.trim_matches('/').is_empty() => {
            format!("/{}", p.trim_start_matches('/'))
        }
        _ => default_path(ns, id),
    }
}

/// The container's cgroup from its bundle's `config.json` (the default when unreadable).
pub fn of_bundle(bundle: &Path, ns: &str, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .map(|s| of_spec(&s, ns, id))
        .unwrap_or_else(|_| default_path(ns, id))
}

/// SIGKILLs every process in cgroup `cgroup` (v2: `cgroup.kill` where the kernel has it,
/// else each pid of `cgroup.procs`; v1: each pid in any hierarchy's copy) and waits up to
/// two seconds for it to empty. For a task whose shim failed after the executor created the
/// container: its init waits for a start that will never come. Returns whether it emptied.
pub fn kill_all(cgroup: &str) -> bool {
    use nix::sys::signal::{kill, Signal};
    let rel = cgroup.trim_start_matches('/');
    if rel.is_empty() {
        return true;
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(rel)];
    if let Ok(rd) = std::fs::read_dir(root) {
        dirs.extend(rd.flatten().map(|e| e.path().join(rel)));
    }
    dirs.retain(|d| d.join("cgroup.procs").exists());
    let pids = || -> Vec<i32> {
        let mut v: Vec<i32> = dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let left = pids();
        if left.is_empty() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            tracing::warn!(cgroup, ?left, "processes survive SIGKILL");
            return false;
        }
        let via_kill_file = dirs
            .iter()
            .any(|d| std::fs::write(d.join("cgroup.kill"), "1").is_ok());
        if !via_kill_file {
            for p in left {
                let _ = kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Removes the container's cgroup `cgroup` (v2, or its copy in every v1 hierarchy) and
/// berthd's own `containers.slice/<ns>-<id>` with the shim's `shim` under it, best effort: a
/// cgroup that still has processes stays. Parents the container's cgroup was created under
/// (kubelet's pod cgroup) belong to whoever asked for them and are left.
pub fn remove(ns: &str, id: &str, cgroup: &str) {
    remove_under(Path::new("/sys/fs/cgroup"), ns, id, cgroup)
}

fn remove_under(root: &Path, ns: &str, id: &str, cgroup: &str) {
    let own = format!("containers.slice/{ns}-{id}");
    let rel = cgroup.trim_start_matches('/');
    let mut roots = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    for r in roots {
        if !rel.is_empty() {
            let _ = std::fs::remove_dir(r.join(rel));
        }
        let d = r.join(&own);
        let _ = std::fs::remove_dir(d.join("shim"));
        let _ = std::fs::remove_dir(d.join("init"));
        let _ = std::fs::remove_dir(&d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_says_where() {
        assert_eq!(
            default_path("k8s.io", "c"),
            "/containers.slice/k8s.io-c/init"
        );
        let spec = br#"{"linux": {"cgroupsPath": "/kubepods/besteffort/pod1/c"}}"#;
        assert_eq!(of_spec(spec, "k8s.io", "c"), "/kubepods/besteffort/pod1/c");
        let rel = br#"{"linux": {"cgroupsPath": "kubepods/pod1/c"}}"#;
        assert_eq!(of_spec(rel, "k8s.io", "c"), "/kubepods/pod1/c");
        for none in [
            &br#"{"linux": {}}"#[..],
            br#"{}"#,
            b"not json",
            br#"{"linux": {"cgroupsPath": "/"}}"#,
        ] {
            assert_eq!(
                of_spec(none, "default", "c"),
                "/containers.slice/default-c/init"
            );
        }
    }

    #[test]
    fn removal_takes_the_container_and_berths_own_dirs_only() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in [
            "kubepods/pod1/c",
            "containers.slice/k8s.io-c/shim",
            "memory/kubepods/pod1/c",
            "memory/containers.slice/k8s.io-c/shim",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        remove_under(r, "k8s.io", "c", "/kubepods/pod1/c");
        for gone in [
            "kubepods/pod1/c",
            "containers.slice/k8s.io-c",
            "memory/kubepods/pod1/c",
            "memory/containers.slice/k8s.io-c",
        ] {
            assert!(!r.join(gone).exists(), "{gone}");
        }
        // The pod's cgroup is kubelet's.
        assert!(r.join("kubepods/pod1").is_dir());
        assert!(r.join("memory/kubepods/pod1").is_dir());
    }
}
