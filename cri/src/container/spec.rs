//! The OCI runtime spec of a CRI container, built by berth-cri from the image config and
//! kubelet's `ContainerConfig` (containerd's `container_create_linux.go` is the model):
//! process (command, env, working directory, user, terminal), mounts (the defaults, the pod's
//! `resolv.conf`/`hosts`/`hostname`, kubelet's volumes with their propagation, devices),
//! namespaces (joining the sandbox's by path), cgroup (`<parent>/<id>`), resources and the
//! security context ([`super::security`]). berthd stores it whole, prepares the image's
//! snapshot and resolves the user in the image's own `/etc/passwd` at task creation.

use std::path::Path;

use serde_json::{json, Value};

use super::security::{self, Security};
use crate::error::{Error, Result};
use crate::images::ImageMeta;
use crate::labels::CONTAINER_CONFIG_ANNOTATION;
use crate::proto::{ContainerConfig, MountPropagation, NamespaceMode};
use crate::sandbox::{self, spec::namespace_modes};

/// PATH when the image sets none (containerd's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the spec is made of.
pub struct Input<'a> {
    /// berthd's namespace (`k8s.io`).
    pub namespace: &'a str,
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a sandbox::Record,
    /// The pause process: its namespaces are joined through `/proc/<pid>/ns/…`.
    pub sandbox_pid: u32,
    /// The pod's `resolv.conf`, `hosts`, `hostname` ([`sandbox::files`]).
    pub sandbox_files: &'a Path,
    pub image: &'a ImageMeta,
    /// The pid of the target container of a `TARGET` PID namespace mode.
    pub target_pid: Option<u32>,
    /// The encoded config ([`CONTAINER_CONFIG_ANNOTATION`]).
    pub config_annotation: String,
    /// Whether the node runs cgroup v2 (a container then gets its own cgroup namespace).
    pub cgroup_v2: bool,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// containerd's rule: a command replaces the entrypoint (and then the image's cmd is not
/// used); args replace the image's cmd.
pub fn argv(c: &ContainerConfig, image: &Value) -> Result<Vec<String>> {
    let (mut command, mut args) = (c.command.clone(), c.args.clone());
    if command.is_empty() {
        command = strings(&image["Entrypoint"]);
        if args.is_empty() {
            args = strings(&image["Cmd"]);
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(Error::InvalidArgument(
            "no command specified: the container config and the image give none".into(),
        ));
    }
    Ok(command)
}

/// The image's environment with the config's on top (a key set twice keeps the last).
pub fn env(c: &ContainerConfig, image: &Value, hostname: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut put = |e: String| {
        let key = e.split('=').next().unwrap_or_default().to_owned();
        out.retain(|o| o.split('=').next().unwrap_or_default() != key);
        out.push(e);
    };
    for e in strings(&image["Env"]) {
        put(e);
    }
    if !hostname.is_empty() {
        put(format!("HOSTNAME={hostname}"));
    }
    for kv in &c.envs {
        put(format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)));
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_owned());
    }
    out
}

fn bind(source: &Path, destination: &str, ro: bool) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    options.push(if ro { "ro" } else { "rw" });
    json!({"destination": destination, "type": "bind", "source": source, "options": options})
}

/// kubelet's volumes: the host path resolved (a symlink is followed; a missing path is
/// created as a directory, kubelet's and containerd's behaviour), its propagation and
/// read-only flag. Image volumes are not supported.
fn volumes(c: &ContainerConfig, privileged: bool) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for m in &c.mounts {
        if m.image.is_some() {
            return Err(Error::Unimplemented(format!(
                "image volume at {}: image volumes are not supported by berth-cri",
                m.container_path
            )));
        }
        if !m.container_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "mount destination {:?} must be absolute",
                m.container_path
            )));
        }
        let host = Path::new(&m.host_path);
        if !host.exists() {
            std::fs::create_dir_all(host).map_err(|source| Error::Io {
                what: format!("create the host path {}", host.display()),
                source,
            })?;
        }
        let source = std::fs::canonicalize(host).map_err(|source| Error::Io {
            what: format!("resolve the host path {}", host.display()),
            source,
        })?;
        let propagation = match MountPropagation::try_from(m.propagation) {
            Ok(MountPropagation::PropagationHostToContainer) => "rslave",
            Ok(MountPropagation::PropagationBidirectional) => "rshared",
            _ => "rprivate",
        };
        if m.recursive_read_only {
            // Reported unsupported in Status (runtime handler features): kubelet and critest
            // do not ask for it then.
            return Err(Error::InvalidArgument(format!(
                "mount {}: recursive read-only mounts are not supported by berth-cri",
                m.container_path
            )));
        }
        let mut options = vec!["rbind".to_owned(), propagation.to_owned()];
        options.push(if m.readonly { "ro" } else { "rw" }.to_owned());
        options.extend(m.mount_options.iter().cloned());
        let _ = privileged;
        out.push(json!({"destination": m.container_path, "type": "bind",
            "source": source, "options": options}));
    }
    Ok(out)
}

/// The namespaces: the pod's network, IPC and UTS joined through the pause process, PID by
/// the container's mode, a mount namespace of its own (and a cgroup one on cgroup v2).
fn namespaces(i: &Input<'_>) -> Result<Vec<Value>> {
    let (net, _, ipc) = namespace_modes(&i.sandbox.config);
    let pid_mode = i
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|o| NamespaceMode::try_from(o.pid).ok())
        .unwrap_or(NamespaceMode::Container);
    let ns = |t: &str| format!("/proc/{}/ns/{t}", i.sandbox_pid);
    let mut v = vec![json!({"type": "mount"})];
    if net != NamespaceMode::Node {
        match i.sandbox.netns() {
            Some(p) => v.push(json!({"type": "network", "path": p})),
            None => v.push(json!({"type": "network", "path": ns("net")})),
        }
        v.push(json!({"type": "uts", "path": ns("uts")}));
    }
    if ipc != NamespaceMode::Node {
        v.push(json!({"type": "ipc", "path": ns("ipc")}));
    }
    match pid_mode {
        NamespaceMode::Node => {}
        NamespaceMode::Pod => v.push(json!({"type": "pid", "path": ns("pid")})),
        NamespaceMode::Target => {
            let pid = i.target_pid.ok_or_else(|| {
                Error::InvalidArgument("PID namespace mode TARGET without a running target".into())
            })?;
            v.push(json!({"type": "pid", "path": format!("/proc/{pid}/ns/pid")}));
        }
        NamespaceMode::Container => v.push(json!({"type": "pid"})),
    }
    if i.cgroup_v2 {
        v.push(json!({"type": "cgroup"}));
    }
    Ok(v)
}

/// kubelet's resources as OCI's `linux.resources` (memory, CPU, cpuset, hugepages, unified).
pub fn resources(r: Option<&crate::proto::LinuxContainerResources>) -> Value {
    let mut out = serde_json::Map::new();
    let Some(r) = r else {
        return Value::Object(out);
    };
    let mut memory = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        memory.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        memory.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    if !memory.is_empty() {
        out.insert("memory".into(), Value::Object(memory));
    }
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    if !cpu.is_empty() {
        out.insert("cpu".into(), Value::Object(cpu));
    }
    if !r.hugepage_limits.is_empty() {
        let h: Vec<Value> = r
            .hugepage_limits
            .iter()
            .map(|l| json!({"pageSize": l.page_size, "limit": l.limit}))
            .collect();
        out.insert("hugepageLimits".into(), json!(h));
    }
    if !r.unified.is_empty() {
        out.insert("unified".into(), json!(r.unified));
    }
    Value::Object(out)
}

/// The spec, JSON.
pub fn build(i: &Input<'_>) -> Result<Vec<u8>> {
    let c = i.config;
    let image = &i.image.config;
    let host_network = i.sandbox.netns().is_none();
    let hostname = if host_network {
        String::new()
    } else {
        i.sandbox.config.hostname.clone()
    };
    let sec: Security = security::from_config(c, &i.image.user)?;
    let args = argv(c, image)?;
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else {
        image["WorkingDir"]
            .as_str()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned()
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidArgument(format!(
            "working directory {cwd:?} must be absolute"
        )));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", if sec.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", if sec.privileged { "rw" } else { "ro" }]}),
    ];
    let given: Vec<&str> = c.mounts.iter().map(|m| m.container_path.as_str()).collect();
    for name in ["resolv.conf", "hosts", "hostname"] {
        let dest = format!("/etc/{name}");
        if !given.contains(&dest.as_str()) {
            mounts.push(bind(
                &i.sandbox_files.join(name),
                &dest,
                sec.readonly_rootfs,
            ));
        }
    }
    mounts.extend(volumes(c, sec.privileged)?);
    let (devices, device_rules) = security::devices(c, sec.privileged)?;
    let mut res = resources(c.linux.as_ref().and_then(|l| l.resources.as_ref()));
    res["devices"] = json!(device_rules);
    let oom = c
        .linux
        .as_ref()
        .and_then(|l| l.resources.as_ref())
        .map_or(0, |r| r.oom_score_adj);
    let md = c.metadata.clone().unwrap_or_default();
    let smd = i.sandbox.config.metadata.clone().unwrap_or_default();
    let mut annotations = serde_json::Map::new();
    for (k, v) in &c.annotations {
        annotations.insert(k.clone(), json!(v));
    }
    for (k, v) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.container-name", md.name.as_str()),
        ("io.kubernetes.cri.sandbox-id", i.sandbox.id.as_str()),
        ("io.kubernetes.cri.sandbox-name", smd.name.as_str()),
        (
            "io.kubernetes.cri.sandbox-namespace",
            smd.namespace.as_str(),
        ),
        ("io.kubernetes.cri.sandbox-uid", smd.uid.as_str()),
        (
            "io.kubernetes.cri.image-name",
            c.image.as_ref().map_or("", |s| s.image.as_str()),
        ),
    ] {
        annotations.insert(k.into(), json!(v));
    }
    annotations.insert(
        CONTAINER_CONFIG_ANNOTATION.into(),
        json!(i.config_annotation),
    );
    if !sec.user.is_empty() {
        annotations.insert(security::USER_ANNOTATION.into(), json!(sec.user));
    }
    let parent = sandbox::spec::cgroup_parent(&i.sandbox.config);
    let mut linux = json!({
        "namespaces": namespaces(i)?,
        "cgroupsPath": sandbox::spec::cgroups_path(i.namespace, parent, i.id),
        "resources": res,
        "devices": devices,
    });
    if !sec.privileged {
        linux["maskedPaths"] = json!(sec.masked_paths);
        linux["readonlyPaths"] = json!(sec.readonly_paths);
    }
    if let Some(s) = &sec.seccomp {
        linux["seccomp"] = s.clone();
    }
    // A bidirectional volume needs the container's mounts to be shared, or what it mounts
    // there never reaches the node (containerd does the same with runc's "rshared";
    // libcontainer 0.7 knows only "shared", which it applies recursively, and refuses
    // "rshared").
    if c.mounts
        .iter()
        .any(|m| m.propagation == MountPropagation::PropagationBidirectional as i32)
    {
        linux["rootfsPropagation"] = json!("shared");
    }
    // No rlimits: the container inherits the node's (berthd's) limits, as containerd's CRI
    // containers inherit containerd's; raising a hard limit would need CAP_SYS_RESOURCE.
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": 0, "gid": 0, "additionalGids": sec.supplemental_groups},
        "args": args,
        "env": env(c, image, &hostname),
        "cwd": cwd,
        "capabilities": {"bounding": sec.caps, "effective": sec.caps, "permitted": sec.caps},
    });
    // Only when set: libcontainer 0.7 loads seccomp late (after dropping capabilities, which
    // then fails) whenever the field is present, false included; absent, it loads it while
    // still privileged, as runc does without no_new_privs.
    if sec.no_new_privs {
        process["noNewPrivileges"] = json!(true);
    }
    if oom != 0 {
        process["oomScoreAdj"] = json!(oom);
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": sec.readonly_rootfs},
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    });
    Ok(serde_json::to_vec_pretty(&spec).expect("JSON of plain values"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::KeyValue;

    #[test]
    fn command_and_args_follow_containerd() {
        let image = json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"], "Env": ["PATH=/bin", "X=1"]});
        let c = |command: &[&str], args: &[&str]| ContainerConfig {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(argv(&c(&[], &[]), &image).unwrap(), ["/ep", "a", "b"]);
        assert_eq!(argv(&c(&[], &["z"]), &image).unwrap(), ["/ep", "z"]);
        assert_eq!(argv(&c(&["sh"], &[]), &image).unwrap(), ["sh"]);
        assert_eq!(
            argv(&c(&["sh"], &["-c", "x"]), &image).unwrap(),
            ["sh", "-c", "x"]
        );
        assert!(argv(&c(&[], &[]), &json!({})).is_err());
        let mut cfg = c(&[], &[]);
        cfg.envs = vec![KeyValue {
            key: "X".into(),
            value: b"2".to_vec(),
        }];
        assert_eq!(
            env(&cfg, &image, "pod"),
            ["PATH=/bin", "HOSTNAME=pod", "X=2"]
        );
        assert_eq!(env(&cfg, &json!({}), "")[0], DEFAULT_PATH);
    }
}
