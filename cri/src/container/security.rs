//! The security context of a CRI container as spec fields: privileged, capabilities (add and
//! drop, `ALL` in either), the user (`run_as_user`/`run_as_username`/`run_as_group`, else the
//! image's; names are resolved by berthd in the image's own `/etc/passwd` at task creation,
//! through [`USER_ANNOTATION`]), supplemental groups, read-only rootfs, `no_new_privs`,
//! masked and read-only paths, seccomp (`RuntimeDefault` — berth's default policy,
//! [`berth_api::seccomp`] —, `Unconfined`, `Localhost` from a file), and devices.

use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::proto::{security_profile::ProfileType, ContainerConfig, SecurityProfile};

/// berthd's annotation for the user to resolve in the container's own `/etc/passwd`
/// (`engine/src/tasks/spec.rs`, `USER_ANNOTATION`).
pub const USER_ANNOTATION: &str = "io.berth.user";

/// The security-relevant parts of a container's spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Security {
    pub privileged: bool,
    /// `CAP_…` names: bounding, effective and permitted.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub readonly_rootfs: bool,
    /// `user[:group]` for berthd to resolve; empty: root.
    pub user: String,
    pub supplemental_groups: Vec<i64>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// The OCI `linux.seccomp` object; `None`: unconfined.
    pub seccomp: Option<Value>,
}

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// The capability set: the defaults (all of them when privileged), then adds and drops with
/// `ALL` meaning every capability (containerd's order: add ALL, drop ALL, then the named).
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    use berth_api::defaults::{ALL_CAPS, CAPS};
    let all = |s: &[String]| s.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps: Vec<String> = if privileged || all(add) {
        // Every capability this process may grant (containerd's `cap.Current()`): a node
        // whose bounding set lacks one cannot hand it to a container either.
        let bounding = own_bounding_set();
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(i, _)| bounding.is_none_or(|b| b & (1u64 << i) != 0))
            .map(|(_, c)| c.to_string())
            .collect()
    } else {
        CAPS.iter().map(|c| c.to_string()).collect()
    };
    if all(drop) {
        caps.clear();
    }
    for a in add.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        let n = cap_name(a);
        if !caps.contains(&n) {
            caps.push(n);
        }
    }
    for d in drop.iter().filter(|c| !c.eq_ignore_ascii_case("ALL")) {
        let n = cap_name(d);
        caps.retain(|c| *c != n);
    }
    caps
}

/// This process's capability bounding set (`CapBnd` of `/proc/self/status`), bit n being
/// capability n ([`berth_api::defaults::ALL_CAPS`] is in that order).
fn own_bounding_set() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = s.lines().find_map(|l| l.strip_prefix("CapBnd:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The OCI seccomp object of berth's default policy for a container with `caps`.
pub fn runtime_default(caps: &[String]) -> Value {
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{
            "names": berth_api::seccomp::denied_with(&caps),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1
        }]
    })
}

/// The seccomp of a container: the profile field, else the deprecated path field
/// (`runtime/default`, `docker/default`, `unconfined`, `localhost/<path>`); neither set is
/// unconfined (kubelet always sets one; critest checks that nil means unconfined).
fn seccomp(
    profile: Option<&SecurityProfile>,
    path: &str,
    caps: &[String],
) -> Result<Option<Value>> {
    let localhost = |p: &str| -> Result<Option<Value>> {
        let text = std::fs::read(p).map_err(|source| Error::Io {
            what: format!("read the seccomp profile {p}"),
            source,
        })?;
        let v: Value = serde_json::from_slice(&text)
            .map_err(|e| Error::InvalidArgument(format!("seccomp profile {p} is not JSON: {e}")))?;
        Ok(Some(v))
    };
    if let Some(p) = profile {
        return match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::RuntimeDefault) => Ok(Some(runtime_default(caps))),
            Ok(ProfileType::Unconfined) => Ok(None),
            Ok(ProfileType::Localhost) => localhost(&p.localhost_ref),
            Err(_) => Err(Error::InvalidArgument(format!(
                "seccomp profile type {} is unknown",
                p.profile_type
            ))),
        };
    }
    match path {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => Ok(Some(runtime_default(caps))),
        p => match p.strip_prefix("localhost/") {
            Some(file) => localhost(file),
            None => Err(Error::InvalidArgument(format!(
                "seccomp profile path {p:?}: expected runtime/default, unconfined or localhost/<path>"
            ))),
        },
    }
}

/// The security of container config `c` whose image runs as `image_user`.
pub fn from_config(c: &ContainerConfig, image_user: &str) -> Result<Security> {
    let sc = c
        .linux
        .as_ref()
        .and_then(|l| l.security_context.clone())
        .unwrap_or_default();
    let (add, drop) = sc
        .capabilities
        .as_ref()
        .map(|k| (k.add_capabilities.clone(), k.drop_capabilities.clone()))
        .unwrap_or_default();
    let caps = capabilities(sc.privileged, &add, &drop);
    let mut user = if !sc.run_as_username.is_empty() {
        sc.run_as_username.clone()
    } else if let Some(u) = &sc.run_as_user {
        u.value.to_string()
    } else {
        String::new()
    };
    if let Some(g) = &sc.run_as_group {
        if user.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "run_as_group {} is given without run_as_user or run_as_username",
                g.value
            )));
        }
        user = format!("{user}:{}", g.value);
    }
    if user.is_empty() {
        user = image_user.to_owned();
    }
    let masked_paths = if sc.masked_paths.is_empty() {
        berth_api::defaults::MASKED_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        sc.masked_paths.clone()
    };
    let readonly_paths = if sc.readonly_paths.is_empty() {
        berth_api::defaults::READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        sc.readonly_paths.clone()
    };
    // The deprecated path field still comes from older kubelets.
    #[allow(deprecated)]
    let path = sc.seccomp_profile_path.clone();
    let seccomp = if sc.privileged {
        None
    } else {
        seccomp(sc.seccomp.as_ref(), &path, &caps)?
    };
    Ok(Security {
        privileged: sc.privileged,
        caps,
        no_new_privs: sc.no_new_privs,
        readonly_rootfs: sc.readonly_rootfs,
        user,
        supplemental_groups: sc.supplemental_groups.clone(),
        masked_paths,
        readonly_paths,
        seccomp,
    })
}

fn device_of(path: &Path) -> Option<(&'static str, u64, u64, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    let kind = if m.file_type().is_char_device() {
        "c"
    } else if m.file_type().is_block_device() {
        "b"
    } else {
        return None;
    };
    let rdev = m.rdev();
    Some((
        kind,
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev),
        m.mode() & 0o777,
    ))
}

/// The `linux.devices` entries and the device cgroup rules: kubelet's devices, or every
/// device node of the host's `/dev` (one level deep) for a privileged container.
pub fn devices(c: &ContainerConfig, privileged: bool) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut devs = Vec::new();
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    if privileged {
        rules = vec![json!({"allow": true, "access": "rwm"})];
        let mut paths = Vec::new();
        for e in std::fs::read_dir("/dev").into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if ["pts", "shm", "mqueue", "console", "ptmx", "fd", "core"].contains(&name.as_str()) {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                paths.extend(
                    std::fs::read_dir(&p)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.path()),
                );
            } else {
                paths.push(p);
            }
        }
        for p in paths {
            if p.is_symlink() {
                continue;
            }
            if let Some((kind, major, minor, mode)) = device_of(&p) {
                devs.push(
                    json!({"path": p, "type": kind, "major": major, "minor": minor,
                    "fileMode": mode, "uid": 0, "gid": 0}),
                );
            }
        }
        return Ok((devs, rules));
    }
    for d in &c.devices {
        let (kind, major, minor, mode) = device_of(Path::new(&d.host_path)).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "device {}: not a device node on this node",
                d.host_path
            ))
        })?;
        let access = if d.permissions.is_empty() {
            "rwm".to_owned()
        } else {
            d.permissions.clone()
        };
        devs.push(
            json!({"path": d.container_path, "type": kind, "major": major,
            "minor": minor, "fileMode": mode, "uid": 0, "gid": 0}),
        );
        rules.push(
            json!({"allow": true, "type": kind, "major": major, "minor": minor,
            "access": access}),
        );
    }
    Ok((devs, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{
        Capability, Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext,
    };

    fn config(sc: LinuxContainerSecurityContext) -> ContainerConfig {
        ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn capabilities_add_drop_all() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = capabilities(false, &s(&["NET_ADMIN"]), &s(&["NET_RAW"]));
        assert!(c.contains(&"CAP_NET_ADMIN".into()) && !c.contains(&"CAP_NET_RAW".into()));
        let bounding = own_bounding_set().unwrap().count_ones() as usize;
        assert_eq!(
            capabilities(false, &s(&["ALL"]), &[]).len(),
            bounding.min(41)
        );
        assert!(capabilities(false, &[], &s(&["ALL"])).is_empty());
        assert_eq!(
            capabilities(false, &s(&["CHOWN"]), &s(&["ALL"])),
            ["CAP_CHOWN"]
        );
        assert_eq!(capabilities(true, &[], &[]).len(), bounding.min(41));
    }

    #[test]
    #[allow(deprecated)]
    fn users_groups_and_seccomp() {
        let s = from_config(&config(Default::default()), "www-data").unwrap();
        assert_eq!(s.user, "www-data");
        assert_eq!(s.seccomp, None, "no profile given: unconfined");
        let s = from_config(
            &config(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 1000 }),
                run_as_group: Some(Int64Value { value: 2000 }),
                supplemental_groups: vec![1234],
                seccomp: Some(SecurityProfile::default()),
                ..Default::default()
            }),
            "",
        )
        .unwrap();
        assert_eq!(s.user, "1000:2000");
        assert_eq!(s.supplemental_groups, [1234]);
        assert_eq!(
            s.seccomp.as_ref().unwrap()["defaultAction"],
            "SCMP_ACT_ALLOW"
        );
        let e = from_config(
            &config(LinuxContainerSecurityContext {
                run_as_group: Some(Int64Value { value: 2000 }),
                ..Default::default()
            }),
            "",
        )
        .unwrap_err();
        assert!(e.to_string().contains("without run_as_user"), "{e}");
        // CAP_SYS_ADMIN lifts mount and friends from the default policy.
        let s = from_config(
            &config(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: vec!["SYS_ADMIN".into()],
                    ..Default::default()
                }),
                seccomp_profile_path: "runtime/default".into(),
                ..Default::default()
            }),
            "",
        )
        .unwrap();
        let denied = s.seccomp.unwrap()["syscalls"][0]["names"].to_string();
        assert!(
            !denied.contains("\"mount\"") && denied.contains("\"ptrace\""),
            "{denied}"
        );
        let s = from_config(
            &config(LinuxContainerSecurityContext {
                privileged: true,
                seccomp_profile_path: "runtime/default".into(),
                ..Default::default()
            }),
            "",
        )
        .unwrap();
        assert_eq!(s.seccomp, None, "privileged containers ignore seccomp");
    }
}
