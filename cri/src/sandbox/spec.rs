//! The OCI runtime spec of a sandbox's `berth-pause` process: a berthd container without an
//! image whose read-only root holds nothing but berth's own binary, bind-mounted read-only
//! as `/berth-pause` (and, when that binary is dynamically linked, as on a development host,
//! the host's library directories, read-only, for its loader). It creates or joins the pod's
//! namespaces: the pinned network namespace CNI configured (none for host-network pods), new
//! IPC, UTS and PID namespaces unless the pod shares the node's, and runs as an unprivileged
//! user with no capabilities and no_new_privs.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::labels::SANDBOX_CONFIG_ANNOTATION;
use crate::proto::{NamespaceMode, PodSandboxConfig};

/// Where the binary appears inside the sandbox (its file name selects the applet).
pub const PAUSE_PATH: &str = "/berth-pause";
/// The user the pause process runs as (Kubernetes' pause image uses 65535 too).
pub const PAUSE_UID: u32 = 65535;

/// The cgroup of a sandbox's or container's processes: `<parent>/<id>` under kubelet's
/// cgroupfs parent (containerd's rule), else berthd's own default
/// (`containers.slice/<ns>-<id>/init`, `engine/src/tasks/cgroups.rs`). berthd reads it back
/// from the spec for metrics, pids and cleanup.
pub fn cgroups_path(ns: &str, parent: &str, id: &str) -> String {
    let parent = parent.trim_end_matches('/');
    if parent.is_empty() {
        format!("/containers.slice/{ns}-{id}/init")
    } else {
        format!("/{}/{id}", parent.trim_start_matches('/'))
    }
}

/// The cgroup parent of a pod (empty: none given).
pub fn cgroup_parent(c: &PodSandboxConfig) -> &str {
    c.linux.as_ref().map_or("", |l| l.cgroup_parent.as_str())
}

/// The namespace modes of a pod: (network, pid, ipc).
pub fn namespace_modes(c: &PodSandboxConfig) -> (NamespaceMode, NamespaceMode, NamespaceMode) {
    let o = c
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref());
    let mode = |m: Option<i32>| {
        m.and_then(|m| NamespaceMode::try_from(m).ok())
            .unwrap_or(NamespaceMode::Pod)
    };
    (
        mode(o.map(|o| o.network)),
        mode(o.map(|o| o.pid)),
        mode(o.map(|o| o.ipc)),
    )
}

/// Whether the ELF file at `path` names a program interpreter (is dynamically linked).
pub fn is_dynamic(path: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return Ok(false); // not a little-endian ELF64: treat as static
    }
    let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]) as u64;
    let phoff = u64::from_le_bytes(h[32..40].try_into().expect("8 bytes"));
    let (phentsize, phnum) = (u16_at(54), u16_at(52 + 4));
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(phoff))?;
    f.read_exact(&mut ph)?;
    const PT_INTERP: u32 = 3;
    Ok(ph.chunks(phentsize.max(4) as usize).any(|p| {
        p.len() >= 4 && u32::from_le_bytes(p[..4].try_into().expect("4 bytes")) == PT_INTERP
    }))
}

/// The host directories a dynamically linked pause binary needs (its loader and libraries).
pub fn library_dirs(binary: &Path) -> Vec<PathBuf> {
    match is_dynamic(binary) {
        Ok(true) => ["/lib", "/lib64"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.is_dir())
            .collect(),
        _ => Vec::new(),
    }
}

/// What the spec is made of.
pub struct Input<'a> {
    pub namespace: &'a str,
    pub id: &'a str,
    pub config: &'a PodSandboxConfig,
    /// The pinned network namespace; `None` for a host-network pod.
    pub netns: Option<&'a Path>,
    pub pause_binary: &'a Path,
    pub library_dirs: &'a [PathBuf],
    /// The encoded config ([`SANDBOX_CONFIG_ANNOTATION`]).
    pub config_annotation: String,
}

fn ro_bind(source: &Path, destination: &str) -> Value {
    json!({"destination": destination, "type": "bind", "source": source,
        "options": ["rbind", "ro", "nosuid", "nodev"]})
}

/// The spec, JSON.
pub fn build(i: &Input<'_>) -> Vec<u8> {
    let (net, pid, ipc) = namespace_modes(i.config);
    let mut namespaces = vec![json!({"type": "mount"})];
    match (net, i.netns) {
        (NamespaceMode::Node, _) | (_, None) => {}
        (_, Some(path)) => namespaces.push(json!({"type": "network", "path": path})),
    }
    let host_net = i.netns.is_none();
    if !host_net {
        namespaces.push(json!({"type": "uts"}));
    }
    if pid != NamespaceMode::Node {
        namespaces.push(json!({"type": "pid"}));
    }
    if ipc != NamespaceMode::Node {
        namespaces.push(json!({"type": "ipc"}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=64k"]}),
        ro_bind(i.pause_binary, PAUSE_PATH),
    ];
    for d in i.library_dirs {
        mounts.push(ro_bind(d, &d.display().to_string()));
    }
    let md = i.config.metadata.clone().unwrap_or_default();
    let mut annotations = serde_json::Map::new();
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("io.kubernetes.cri.sandbox-id", i.id),
        ("io.kubernetes.cri.sandbox-name", &md.name),
        ("io.kubernetes.cri.sandbox-namespace", &md.namespace),
        ("io.kubernetes.cri.sandbox-uid", &md.uid),
        (
            "io.kubernetes.cri.sandbox-log-directory",
            &i.config.log_directory,
        ),
    ] {
        annotations.insert(k.into(), json!(v));
    }
    annotations.insert(SANDBOX_CONFIG_ANNOTATION.into(), json!(i.config_annotation));
    let sysctl: serde_json::Map<String, Value> = i
        .config
        .linux
        .as_ref()
        .map(|l| {
            l.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": PAUSE_UID, "gid": PAUSE_UID},
            "args": [PAUSE_PATH],
            "env": ["PATH=/"],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path(i.namespace, cgroup_parent(i.config), i.id),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "sysctl": sysctl,
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/sys/firmware"]
        }
    });
    if !host_net && !i.config.hostname.is_empty() {
        spec["hostname"] = json!(i.config.hostname);
    }
    serde_json::to_vec_pretty(&spec).expect("JSON of plain values")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption};

    fn config(network: NamespaceMode) -> PodSandboxConfig {
        PodSandboxConfig {
            hostname: "web-0".into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_and_host_network_specs() {
        let c = config(NamespaceMode::Pod);
        let bin = PathBuf::from("/usr/bin/berth");
        let spec: Value = serde_json::from_slice(&build(&Input {
            namespace: "k8s.io",
            id: "abc",
            config: &c,
            netns: Some(Path::new("/run/netns/berth-abc")),
            pause_binary: &bin,
            library_dirs: &[],
            config_annotation: "AA==".into(),
        }))
        .unwrap();
        let types: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["mount", "network", "uts", "pid", "ipc"]);
        assert_eq!(
            spec["linux"]["namespaces"][1]["path"],
            "/run/netns/berth-abc"
        );
        assert_eq!(spec["hostname"], "web-0");
        assert_eq!(spec["root"]["readonly"], true);
        assert_eq!(spec["mounts"][2]["source"], "/usr/bin/berth");
        assert_eq!(
            spec["linux"]["cgroupsPath"],
            "/containers.slice/k8s.io-abc/init"
        );
        assert_eq!(
            cgroups_path("k8s.io", "/kubepods/pod1/", "abc"),
            "/kubepods/pod1/abc"
        );
        assert_eq!(spec["annotations"][SANDBOX_CONFIG_ANNOTATION], "AA==");
        let c = config(NamespaceMode::Node);
        let spec: Value = serde_json::from_slice(&build(&Input {
            namespace: "k8s.io",
            id: "abc",
            config: &c,
            netns: None,
            pause_binary: &bin,
            library_dirs: &[PathBuf::from("/lib")],
            config_annotation: String::new(),
        }))
        .unwrap();
        let types: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["mount", "pid", "ipc"]);
        assert!(spec.get("hostname").is_none());
        assert_eq!(spec["mounts"][3]["destination"], "/lib");
    }

    #[test]
    fn this_test_binary_is_recognised() {
        let me = std::env::current_exe().unwrap();
        // Host test builds are dynamically linked; static release builds are not.
        let dynamic = is_dynamic(&me).unwrap();
        assert_eq!(
            dynamic,
            !library_dirs(&me).is_empty() || !Path::new("/lib").is_dir()
        );
        assert!(!is_dynamic(Path::new("/proc/self/status")).unwrap_or(false));
    }
}
