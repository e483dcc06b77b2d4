//! Shared by the registry pull tests and the pull benchmark: a real `docker-registry` on
//! loopback (its own config, port and storage), pushes with skopeo, explicit endpoint lists,
//! and berthd's storage and snapshotters opened in-process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_runtime::remotes::client::ClientOptions;
use berth_runtime::remotes::pull::PullOptions;
use berth_runtime::remotes::{Capabilities, RegistryHost, Scheme, TlsSettings};
use berth_runtime::snapshots::service::Snapshotters;
use berth_runtime::storage_api::Storage;

use super::common::run;

/// A docker-registry child process; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct RegistryConfig<'a> {
    pub tls: Option<(&'a Path, &'a Path)>,
    pub htpasswd: Option<&'a Path>,
    /// Run inside this network namespace (`ip netns exec`).
    pub netns: Option<&'a str>,
}

pub fn start_registry(dir: &Path, cfg: RegistryConfig<'_>) -> Result<Registry> {
    start_registry_with(dir, cfg, "")
}

/// [`start_registry`] with `extra` appended to the registry's YAML config.
pub fn start_registry_with(dir: &Path, cfg: RegistryConfig<'_>, extra: &str) -> Result<Registry> {
    std::fs::create_dir_all(dir)?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: berth-test\n",
        dir.join("data").display()
    );
    if let Some((cert, key)) = cfg.tls {
        yaml.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    if let Some(h) = cfg.htpasswd {
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            h.display()
        ));
    }
    yaml.push_str(extra);
    let config = dir.join("config.yml");
    std::fs::write(&config, yaml)?;
    let mut cmd = match cfg.netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "docker-registry"]);
            c
        }
        None => Command::new("docker-registry"),
    };
    let child = cmd
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log"))?)
        .spawn()
        .context("spawn docker-registry")?;
    let mut reg = Registry { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = match cfg.netns {
            None => TcpStream::connect(&reg.addr).is_ok(),
            Some(ns) => Command::new("ip")
                .args(["netns", "exec", ns, "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        };
        if up {
            return Ok(reg);
        }
        if let Some(status) = reg.child.try_wait()? {
            bail!(
                "docker-registry exited ({status}): {}",
                std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("docker-registry did not listen on {} within 20 s", reg.addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn endpoint(scheme: Scheme, addr: &str) -> RegistryHost {
    RegistryHost {
        scheme,
        host: addr.to_string(),
        path: "/v2".into(),
        capabilities: Capabilities::PULL_RESOLVE,
        tls: TlsSettings::default(),
        headers: Vec::new(),
        override_path: false,
        namespace: None,
        dial_timeout: Some(Duration::from_secs(2)),
        source: None,
    }
}

/// berthd's storage and snapshotters opened in-process on `root`.
pub struct Engine {
    pub storage: Arc<Storage>,
    pub snapshotters: Arc<Snapshotters>,
}

pub fn engine(root: &Path) -> Result<Engine> {
    std::fs::create_dir_all(root)?;
    let mut registry = berth_runtime::plugins::Registry::default();
    let snapshotters = Arc::new(berth_runtime::snapshots::service::load(root, &mut registry));
    let storage = Arc::new(Storage::open_with(
        root,
        &BTreeMap::new(),
        snapshotters.clone(),
    )?);
    Ok(Engine {
        storage,
        snapshotters,
    })
}

pub fn opts(stall: Duration) -> PullOptions {
    PullOptions {
        client: ClientOptions {
            stall_timeout: stall,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Pushes the image tagged `tag` in the OCI layout `layout` to `dest` (`host:port/repo:tag`)
/// with skopeo (inside `netns` when given).
pub fn push_layout(
    layout: &Path,
    tag: &str,
    dest: &str,
    creds: Option<&str>,
    netns: Option<&str>,
) -> Result<()> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "skopeo"]);
            c
        }
        None => Command::new("skopeo"),
    };
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.arg("--dest-creds").arg(c);
    }
    cmd.arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{dest}"));
    run(&mut cmd)?;
    Ok(())
}
