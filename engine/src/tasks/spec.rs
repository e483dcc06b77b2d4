//! The OCI runtime spec of a container, generated from its image's config and the run
//! options, like containerd's `oci.WithDefaultSpec` + `oci.WithImageConfig`: process (args,
//! env, cwd, user), the default mounts (proc, sysfs, a tmpfs `/dev` — the executor creates the
//! default device nodes in it —, devpts, shm, mqueue, cgroup), masked and read-only paths,
//! default capabilities, no_new_privs, rlimits, hostname, namespaces, a default seccomp
//! profile, resources and bind mounts.
//!
//! The user is resolved in two steps: the spec records the requested `user[:group]` in the
//! annotation [`USER_ANNOTATION`], and [`resolve_user`] turns it into uid, gid and additional
//! gids from the container's own `/etc/passwd` and `/etc/group` once its rootfs is mounted
//! (at task creation), never through NSS. Files are opened with `RESOLVE_IN_ROOT`, so a
//! symlinked `/etc/passwd` cannot point outside the rootfs.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use serde_json::{json, Value};

use super::Error;

/// Annotation holding the requested `user[:group]` until [`resolve_user`] resolves it.
pub const USER_ANNOTATION: &str = "io.berth.user";
/// PATH when the image sets none (containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set, without `CAP_MKNOD` (see
/// [`berth_api::defaults::CAPS`]).
pub const DEFAULT_CAPS: &[&str] = berth_api::defaults::CAPS;

/// containerd's masked paths.
pub const MASKED_PATHS: &[&str] = berth_api::defaults::MASKED_PATHS;

/// containerd's read-only paths.
pub const READONLY_PATHS: &[&str] = berth_api::defaults::READONLY_PATHS;

/// System calls the default seccomp profile refuses with EPERM: berth's one list, in
/// [`berth_api::seccomp`] (where it comes from and why a deny list).
pub const SECCOMP_DENIED: &[&str] = berth_api::seccomp::DENIED;

/// A bind mount requested by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub options: Vec<String>,
}

/// What `berthctl run` asks for on top of the image config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Command; empty: entrypoint + cmd of the image.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries overriding the image's.
    pub env: Vec<String>,
    /// `user[:group]` or `uid[:gid]`; empty: the image's user (root when none).
    pub user: String,
    /// Share the host's network namespace.
    pub host_network: bool,
    pub binds: Vec<Bind>,
    /// Bytes.
    pub memory_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub hostname: String,
    pub cwd: String,
}

/// The cgroup of a container's processes (the shim goes next to it, in `…/shim`); a spec
/// given whole may name another ([`super::cgroups`]).
pub fn cgroup_path(ns: &str, id: &str) -> String {
    super::cgroups::default_path(ns, id)
}

fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in base.iter().chain(extra) {
        let key = e.split('=').next().unwrap_or_default();
        out.retain(|o| o.split('=').next().unwrap_or_default() != key);
        out.push(e.clone());
    }
    if !out.iter().any(|e| e.starts_with("PATH=")) {
        out.insert(0, DEFAULT_PATH.to_owned());
    }
    out
}

/// Builds the spec for container `id` in namespace `ns` from the image `config` (absent for
/// a spec without image) and `opts`; checks it parses as an OCI runtime spec.
pub fn generate(
    ns: &str,
    id: &str,
    config: Option<&ImageConfiguration>,
    opts: &Options,
) -> Result<Vec<u8>, Error> {
    let ic = config.and_then(|c| c.config().as_ref());
    let mut args = opts.args.clone();
    if args.is_empty() {
        if let Some(ic) = ic {
            args.extend(ic.entrypoint().clone().unwrap_or_default());
            args.extend(ic.cmd().clone().unwrap_or_default());
        }
    } else if let Some(ep) = ic.and_then(|c| c.entrypoint().clone()) {
        // containerd: arguments given replace cmd, the entrypoint stays.
        args = ep.into_iter().chain(args).collect();
    }
    if args.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "container {id:?}: no command given and the image has neither entrypoint nor cmd"
        )));
    }
    let env = merge_env(
        &ic.and_then(|c| c.env().clone()).unwrap_or_default(),
        &opts.env,
    );
    for e in &env {
        if !e.contains('=') {
            return Err(Error::InvalidSpec(format!(
                "environment entry {e:?}: expected KEY=VALUE"
            )));
        }
    }
    let cwd = if !opts.cwd.is_empty() {
        opts.cwd.clone()
    } else {
        ic.and_then(|c| c.working_dir().clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    };
    if !cwd.starts_with('/') {
        return Err(Error::InvalidSpec(format!(
            "working directory {cwd:?}: must be absolute"
        )));
    }
    let user = if !opts.user.is_empty() {
        opts.user.clone()
    } else {
        ic.and_then(|c| c.user().clone()).unwrap_or_default()
    };
    let hostname = if opts.hostname.is_empty() {
        id.chars().take(63).collect()
    } else {
        opts.hostname.clone()
    };
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for b in &opts.binds {
        if !b.destination.starts_with('/') {
            return Err(Error::InvalidSpec(format!(
                "bind mount destination {:?}: must be absolute",
                b.destination
            )));
        }
        if !b.source.is_absolute() {
            return Err(Error::InvalidSpec(format!(
                "bind mount source {}: must be absolute",
                b.source.display()
            )));
        }
        let mut options = b.options.clone();
        if !options.iter().any(|o| o == "bind" || o == "rbind") {
            options.insert(0, "rbind".into());
        }
        mounts.push(json!({"destination": b.destination, "type": "bind",
            "source": b.source, "options": options}));
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if !opts.host_network {
        namespaces.push(json!({"type": "network"}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = opts.memory_limit {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(c) = opts.cpus {
        if !(c > 0.0 && c.is_finite()) {
            return Err(Error::InvalidSpec(format!(
                "cpus {c}: expected a positive number"
            )));
        }
        let period = 100_000u64;
        resources["cpu"] = json!({"quota": (c * period as f64).round() as i64, "period": period});
    }
    if let Some(p) = opts.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut annotations = serde_json::Map::new();
    if !user.is_empty() {
        annotations.insert(USER_ANNOTATION.into(), Value::String(user));
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroup_path(ns, id),
            "resources": resources,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [{"names": SECCOMP_DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
            }
        }
    });
    let bytes = serde_json::to_vec_pretty(&spec).expect("a JSON value serializes");
    parse(&bytes)?;
    Ok(bytes)
}

/// Parses a spec as the executor will, for a clear error at create time.
pub fn parse(bytes: &[u8]) -> Result<oci_spec::runtime::Spec, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidSpec(format!("OCI runtime spec: {e}")))
}

/// Reads `/etc/<name>` of `rootfs` with the path resolved inside the rootfs; `None` when it
/// does not exist.
fn read_etc(rootfs: &Path, name: &str) -> Result<Option<String>, Error> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let dir = std::fs::File::open(rootfs).map_err(|source| Error::Io {
        what: format!("open rootfs {}", rootfs.display()),
        source,
    })?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path = format!("etc/{name}");
    match openat2(dir.as_raw_fd(), path.as_str(), how) {
        Ok(fd) => {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let mut s = String::new();
            f.by_ref()
                .take(4 << 20)
                .read_to_string(&mut s)
                .map_err(|source| Error::Io {
                    what: format!("read /etc/{name} of the container"),
                    source,
                })?;
            Ok(Some(s))
        }
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::Io {
            what: format!("open /etc/{name} of the container"),
            source: e.into(),
        }),
    }
}

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Resolves `spec` (`user`, `user:group`, `uid`, `uid:gid`) in the container's `/etc/passwd`
/// and `/etc/group` under `rootfs`, like runc's `user.GetExecUser`: a numeric user missing
/// from passwd is fine (gid 0 unless given); a name must exist.
pub fn lookup_user(rootfs: &Path, spec: &str) -> Result<User, Error> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_etc(rootfs, "passwd")?.unwrap_or_default();
    let group = read_etc(rootfs, "group")?.unwrap_or_default();
    // name:x:uid:gid:gecos:home:shell
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let matches = if let Ok(n) = u.parse::<u32>() {
            n == uid
        } else {
            f[0] == u
        };
        matches.then(|| {
            (
                f[0].to_owned(),
                uid,
                f[3].parse::<u32>().unwrap_or(0),
                f.get(5).copied().unwrap_or("/").to_owned(),
            )
        })
    });
    let (name, uid, mut gid, home) = match (entry, u.parse::<u32>()) {
        (Some(e), _) => e,
        (None, Ok(n)) => (String::new(), n, 0, "/".to_owned()),
        (None, Err(_)) => {
            return Err(Error::InvalidSpec(format!(
                "user {u:?}: no such user in the container's /etc/passwd"
            )))
        }
    };
    let groups: Vec<(String, u32, Vec<String>)> = group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 3).then(|| {
                Some((
                    f[0].to_owned(),
                    f[2].parse().ok()?,
                    f.get(3)
                        .map(|m| m.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                ))
            })?
        })
        .collect();
    if let Some(g) = g {
        gid = if let Ok(n) = g.parse::<u32>() {
            n
        } else {
            groups
                .iter()
                .find(|(n, _, _)| n == g)
                .map(|(_, id, _)| *id)
                .ok_or_else(|| {
                    Error::InvalidSpec(format!(
                        "group {g:?}: no such group in the container's /etc/group"
                    ))
                })?
        };
    }
    let mut additional_gids: Vec<u32> = if name.is_empty() || g.is_some() {
        Vec::new()
    } else {
        groups
            .iter()
            .filter(|(_, _, members)| members.iter().any(|m| m == &name))
            .map(|(_, id, _)| *id)
            .collect()
    };
    additional_gids.retain(|x| *x != gid);
    additional_gids.dedup();
    Ok(User {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Resolves the spec's [`USER_ANNOTATION`] against `rootfs` and sets `process.user` (and
/// `HOME` when the environment has none). Returns the spec to write to the bundle.
pub fn resolve_user(spec: &[u8], rootfs: &Path) -> Result<Vec<u8>, Error> {
    let mut v: Value = serde_json::from_slice(spec)
        .map_err(|e| Error::InvalidSpec(format!("OCI runtime spec: {e}")))?;
    let requested = v["annotations"][USER_ANNOTATION]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let user = if requested.is_empty() {
        lookup_user(rootfs, "0").unwrap_or(User {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/root".into(),
        })
    } else {
        lookup_user(rootfs, &requested)?
    };
    if v["process"].is_object() {
        if requested.is_empty() {
            // A spec given whole keeps its own user.
            if v["process"]["user"].is_null() {
                v["process"]["user"] = json!({"uid": 0, "gid": 0});
            }
        } else {
            // Groups the spec names already (CRI's supplemental groups) stay, after the
            // user's own from /etc/group.
            let mut gids = user.additional_gids.clone();
            if let Some(given) = v["process"]["user"]["additionalGids"].as_array() {
                for g in given.iter().filter_map(Value::as_u64) {
                    let g = g as u32;
                    if !gids.contains(&g) && g != user.gid {
                        gids.push(g);
                    }
                }
            }
            v["process"]["user"] = json!({"uid": user.uid, "gid": user.gid,
                "additionalGids": gids});
        }
        if let Some(env) = v["process"]["env"].as_array_mut() {
            if !env
                .iter()
                .any(|e| e.as_str().is_some_and(|s| s.starts_with("HOME=")))
            {
                env.push(Value::String(format!("HOME={}", user.home)));
            }
        }
    }
    let bytes = serde_json::to_vec_pretty(&v).expect("a JSON value serializes");
    parse(&bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\naudio:x:29:app,root\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn users_resolve_from_the_containers_own_files() {
        let r = rootfs();
        let app = lookup_user(r.path(), "app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, vec![10, 29]);
        assert_eq!(app.home, "/home/app");
        let u = lookup_user(r.path(), "nobody:audio").unwrap();
        assert_eq!((u.uid, u.gid), (65534, 29));
        let u = lookup_user(r.path(), "4242:17").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 17));
        let e = lookup_user(r.path(), "ghost").unwrap_err().to_string();
        assert!(e.contains("no such user"), "{e}");
        let e = lookup_user(r.path(), "app:ghosts").unwrap_err().to_string();
        assert!(e.contains("no such group"), "{e}");
    }

    #[test]
    fn a_symlinked_passwd_cannot_leave_the_rootfs() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(outside.path().join("passwd"), r.path().join("etc/passwd"))
            .unwrap();
        // The absolute target resolves inside the rootfs, where it does not exist.
        let e = lookup_user(r.path(), "evil").unwrap_err().to_string();
        assert!(e.contains("no such user"), "{e}");
    }

    #[test]
    fn spec_from_options() {
        let opts = Options {
            args: vec!["echo".into(), "hi".into()],
            env: vec!["A=1".into()],
            user: "app".into(),
            memory_limit: Some(32 << 20),
            cpus: Some(0.5),
            pids_limit: Some(20),
            ..Default::default()
        };
        let bytes = generate("default", "c1", None, &opts).unwrap();
        let spec = parse(&bytes).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(
            p.args().as_ref().unwrap(),
            &vec!["echo".to_string(), "hi".into()]
        );
        assert!(p.env().as_ref().unwrap().contains(&"A=1".to_string()));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(spec.hostname().as_deref(), Some("c1"));
        let r = rootfs();
        let resolved = resolve_user(&bytes, r.path()).unwrap();
        let spec = parse(&resolved).unwrap();
        let u = spec.process().as_ref().unwrap().user();
        assert_eq!((u.uid(), u.gid()), (1000, 1000));
        assert!(String::from_utf8_lossy(&resolved).contains("HOME=/home/app"));
        // Supplemental groups in the spec stay, after the user's own.
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        v["process"]["user"]["additionalGids"] = json!([4242, 10]);
        let resolved = resolve_user(&serde_json::to_vec(&v).unwrap(), r.path()).unwrap();
        let spec = parse(&resolved).unwrap();
        let u = spec.process().as_ref().unwrap().user();
        assert_eq!(u.additional_gids().as_deref(), Some(&[10, 29, 4242][..]));
        let e = generate("default", "c1", None, &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no command"), "{e}");
    }
}
