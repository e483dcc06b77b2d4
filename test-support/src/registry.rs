//! A real `docker-registry` on loopback (its own config, port and storage) and pushes to it
//! with skopeo: the pull host tests and the QEMU registry and ZFS scenarios share it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// A docker-registry child process; killed on drop.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The registry's stderr: its log.
    pub log: PathBuf,
    /// The registry's stdout: its access log (combined log format), when enabled.
    pub access_log: PathBuf,
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

/// How to run the registry; `RegistryConfig::default()` is plain HTTP, no auth, host netns.
#[derive(Default)]
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
    spawn(dir, cfg, extra, false)
}

/// [`start_registry`] logging every request: the access log in [`Registry::access_log`], and
/// at level info one `response completed` line per request in [`Registry::log`] with
/// `http.request.host` (the `Host` the client sent) and `http.request.uri`.
pub fn start_registry_logged(dir: &Path, cfg: RegistryConfig<'_>) -> Result<Registry> {
    spawn(dir, cfg, "", true)
}

fn spawn(dir: &Path, cfg: RegistryConfig<'_>, extra: &str, logged: bool) -> Result<Registry> {
    std::fs::create_dir_all(dir)?;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = if logged {
        "log:\n  level: info\n  formatter: text\n"
    } else {
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
    };
    let mut yaml = format!(
        "version: 0.1\n{log}storage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: berth-test\n",
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
    let log = dir.join("registry.log");
    let access_log = dir.join("access.log");
    let child = cmd
        .arg("serve")
        .arg(&config)
        .stdout(std::fs::File::create(&access_log)?)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("spawn docker-registry")?;
    let mut reg = Registry {
        child,
        addr,
        log,
        access_log,
    };
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
                std::fs::read_to_string(&reg.log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("docker-registry did not listen on {} within 20 s", reg.addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    run(&mut cmd)
}

/// Runs `cmd`; fails with its stderr when it exits non-zero.
fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// An OCI layout in `<work>/oci` with one image, `v1`: static busybox (Debian's
/// `busybox-static`) as `/bin/busybox`, `/bin/sh` and `/bin/echo`, built with umoci.
pub fn busybox_layout(work: &Path) -> Result<PathBuf> {
    busybox_layout_with(work, &["sh", "echo"])
}

/// [`busybox_layout`] with every applet busybox has as a link in `/bin` (`sleep`, `ls`,
/// `id`, `ping`, `brctl`…), the shape of the e2e busybox image CRI tests run, plus
/// `/etc/passwd` and `/etc/group` with root, `www-data` (33) and `nobody`.
pub fn busybox_layout_full(work: &Path) -> Result<PathBuf> {
    let out = Command::new("/bin/busybox").arg("--list").output()?;
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let applets: Vec<&str> = list.lines().filter(|a| *a != "busybox").collect();
    busybox_layout_with(work, &applets)
}

fn busybox_layout_with(work: &Path, applets: &[&str]) -> Result<PathBuf> {
    let layout = work.join("oci");
    let image = format!("{}:v1", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci")
        .args(["unpack", "--rootless", "--image", &image])
        .arg(&bundle))?;
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy("/bin/busybox", bin.join("busybox"))?;
    for applet in applets {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    if applets.len() > 2 {
        let etc = bundle.join("rootfs/etc");
        std::fs::create_dir_all(&etc)?;
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )?;
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nwww-data:x:33:\nusers:x:100:\nnogroup:x:65534:\n",
        )?;
        let tmp = bundle.join("rootfs/tmp");
        std::fs::create_dir_all(&tmp)?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
    }
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    run(Command::new("umoci").args(["config", "--image", &image, "--config.cmd", "/bin/sh"]))?;
    Ok(layout)
}
