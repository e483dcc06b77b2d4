//! Shared by the host tests that drive Debian's containerd as a reference (the unpack oracle
//! and the benchmarks): running tools, a containerd instance of the test's own, and the
//! benchmarks' image building and statistics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::mount::MntFlags;

/// Runs `cmd`, failing with its output when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Root and the host tools, or a visible skip (not root) / an error (root, tools missing:
/// CI installs them with scripts/install-deps.sh, so their absence there is a failure).
pub fn root_and_tools(what: &str, tools: &[&str]) -> Result<bool> {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIP: {what} needs root (mounts, containerd, chown, mknod){}",
            if missing.is_empty() {
                String::new()
            } else {
                format!("; also missing: {missing:?}")
            }
        );
        return Ok(false);
    }
    if !missing.is_empty() {
        bail!("{what}: missing host tools {missing:?} (scripts/install-deps.sh installs them)");
    }
    Ok(true)
}

/// A containerd of the test's own: root, state, sockets and config under `dir`, CRI off.
/// Dropping it stops it (SIGTERM, then SIGKILL after 20 s) and detaches anything still
/// mounted under `dir`.
pub struct Containerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    /// Starts containerd under `dir` and waits until `ctr version` answers.
    pub fn start(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let config = format!(
            r#"version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{b}/containerd.sock"
[ttrpc]
  address = "{b}/containerd.sock.ttrpc"
[debug]
  address = "{b}/debug.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"
"#,
            b = dir.display()
        );
        fs::write(dir.join("config.toml"), config)?;
        let log = fs::File::create(dir.join("containerd.log"))?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn containerd")?;
        let mut me = Self {
            dir: dir.to_owned(),
            child: Some(child),
        };
        // Hang guard only: containerd starts in well under a second here.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if me.sock().exists() && run(me.ctr("default").arg("version")).is_ok() {
                return Ok(me);
            }
            if let Some(status) = me.child.as_mut().unwrap().try_wait()? {
                me.child = None;
                bail!(
                    "containerd exited ({status}): {}",
                    fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
                );
            }
            ensure!(
                Instant::now() < deadline,
                "containerd did not come up in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// containerd's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `ctr` against this instance, in `namespace`.
    pub fn ctr(&self, namespace: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.sock()).arg("-n").arg(namespace);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        unmount_below(&self.dir);
    }
}

/// Detaches every mount at or below `dir`, deepest first (cleanup after failures).
pub fn unmount_below(dir: &Path) {
    let root = dir.to_string_lossy().into_owned();
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&root))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        eprintln!("cleanup: leftover mount {m}");
        let _ = nix::mount::umount2(m, MntFlags::MNT_DETACH);
    }
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// An OCI layout `work/oci` with image `bench` of one layer per host directory of `sources`
/// (copied whole: many small files, as real base images have), built with umoci. Returns the
/// layout and its number of layers; directories this host lacks are left out, fewer than two
/// is an error.
pub fn umoci_layout(work: &Path, sources: &[&str]) -> Result<(PathBuf, usize)> {
    let layout = work.join("oci");
    let image = format!("{}:bench", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    let mut layers = 0;
    for src in sources {
        if !Path::new(src).is_dir() {
            println!("bench: {src} not on this host, layer left out");
            continue;
        }
        run(Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle))?;
        let dest = bundle.join("rootfs").join(src.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap())?;
        run(Command::new("cp").arg("-a").arg(src).arg(&dest))?;
        run(Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle))?;
        fs::remove_dir_all(&bundle)?;
        layers += 1;
    }
    ensure!(
        layers >= 2,
        "bench: too few source directories on this host"
    );
    Ok((layout, layers))
}

/// Resident memory of process `pid` (VmRSS), in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}
