//! The files a pod's containers share, derived from the sandbox's config: `resolv.conf` from
//! `DNSConfig` (or the node's for a host-network pod, or when no servers are given),
//! `hosts` (localhost and the pod's hostname on its IP) and `hostname`. containerd keeps them
//! in the sandbox's directory and bind-mounts them into every container; berth-cri does the
//! same under `<state_dir>/sandboxes/<id>/`. They are derived data: written again from the
//! record whenever missing (a restarted node, a tmpfs), and removed with the sandbox.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::proto::PodSandboxConfig;

/// The directory of sandbox `id`'s files.
pub fn dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("sandboxes").join(id)
}

/// `resolv.conf` of a pod: kubelet's DNSConfig, else the node's file.
pub fn resolv_conf(c: &PodSandboxConfig, host_network: bool) -> String {
    let dns = c.dns_config.as_ref().filter(|d| !d.servers.is_empty());
    match dns {
        Some(d) if !host_network => {
            let mut s = String::new();
            for server in &d.servers {
                s.push_str(&format!("nameserver {server}\n"));
            }
            if !d.searches.is_empty() {
                s.push_str(&format!("search {}\n", d.searches.join(" ")));
            }
            if !d.options.is_empty() {
                s.push_str(&format!("options {}\n", d.options.join(" ")));
            }
            s
        }
        _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

/// `hosts` of a pod (kubelet's managed hosts file shape).
pub fn hosts(hostname: &str, ip: Option<&str>, host_network: bool) -> String {
    if host_network {
        if let Ok(h) = std::fs::read_to_string("/etc/hosts") {
            return h;
        }
    }
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if let (Some(ip), false) = (ip, hostname.is_empty()) {
        s.push_str(&format!("{ip}\t{hostname}\n"));
    }
    s
}

/// Writes the files of sandbox `id` when missing; returns their directory.
pub fn ensure(
    state_dir: &Path,
    id: &str,
    c: &PodSandboxConfig,
    ip: Option<&str>,
    host_network: bool,
) -> Result<PathBuf> {
    let d = dir(state_dir, id);
    let io = |what: String| move |source| Error::Io { what, source };
    std::fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
    let hostname = if host_network || c.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        c.hostname.clone()
    };
    for (name, text) in [
        ("resolv.conf", resolv_conf(c, host_network)),
        ("hosts", hosts(&hostname, ip, host_network)),
        ("hostname", format!("{hostname}\n")),
    ] {
        let p = d.join(name);
        if !p.exists() {
            let tmp = d.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, text).map_err(io(format!("write {}", tmp.display())))?;
            std::fs::rename(&tmp, &p).map_err(io(format!("rename {}", p.display())))?;
        }
    }
    Ok(d)
}

/// Removes sandbox `id`'s files (none is fine).
pub fn remove(state_dir: &Path, id: &str) {
    let _ = std::fs::remove_dir_all(dir(state_dir, id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::DnsConfig;

    #[test]
    fn dns_config_and_hosts() {
        let c = PodSandboxConfig {
            hostname: "web-0".into(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.10.10.10".into()],
                searches: vec!["google.com".into()],
                options: vec!["ndots:8".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(&c, false),
            "nameserver 10.10.10.10\nsearch google.com\noptions ndots:8\n"
        );
        assert!(hosts("web-0", Some("10.88.0.2"), false).ends_with("10.88.0.2\tweb-0\n"));
        let d = tempfile::tempdir().unwrap();
        let files = ensure(d.path(), "abc", &c, Some("10.88.0.2"), false).unwrap();
        assert_eq!(
            std::fs::read_to_string(files.join("hostname")).unwrap(),
            "web-0\n"
        );
        remove(d.path(), "abc");
        assert!(!files.exists());
    }
}
