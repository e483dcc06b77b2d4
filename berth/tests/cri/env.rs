//! The world of the CRI host tests: a network namespace of the test's own (CNI's bridge,
//! iptables masquerading and host-local never touch the host's), a loopback docker-registry,
//! berthd and berth-cri inside that namespace (sharing the host's mount namespace, so the
//! netns pins berth-cri makes are visible to berthd's shims), and the real crictl
//! from scripts/build-cri-tools.sh's cache (critest's tests ask for critest themselves).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_test_support::registry::{start_registry, Registry, RegistryConfig};
use berth_test_support::{host, support};

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn create(name: &str) -> Result<Netns> {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        host::run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns(name.to_owned());
        host::run(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// `nsenter --net=… -- program`: only the network namespace changes.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.0))
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A child process killed (SIGTERM, then SIGKILL) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tool` (`crictl` or `critest`), built through the script into its cache when missing (or
/// waited for while `make test`'s background build of it runs); `None` (after printing why)
/// when it cannot be had. Each tool alone: `make test` needs crictl only, whose cold build is
/// much cheaper than critest's.
pub fn cri_tool(tool: &str) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-cri-tools.sh");
    let started = Instant::now();
    let out = Command::new(&script)
        .arg(tool)
        .stderr(Stdio::inherit())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).lines().last()?.trim());
            println!(
                "{tool} ready in {:.1}s: {}",
                started.elapsed().as_secs_f64(),
                dir.display()
            );
            Some(dir.join(tool))
        }
        Ok(o) => {
            eprintln!(
                "SKIP: scripts/build-cri-tools.sh {tool} failed ({}): {tool} unavailable",
                o.status
            );
            None
        }
        Err(e) => {
            eprintln!("SKIP: cannot run scripts/build-cri-tools.sh: {e}");
            None
        }
    }
}

/// Everything running; dropped in reverse: berth-cri, berthd, registry, namespace.
pub struct Env {
    pub crictl_bin: PathBuf,
    pub cri: Option<Proc>,
    pub berthd: Option<Proc>,
    pub registry: Registry,
    pub netns: Netns,
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn socket(&self) -> PathBuf {
        self.path("cri.sock")
    }

    pub fn berthd_socket(&self) -> PathBuf {
        self.path("state/berthd.sock")
    }

    /// crictl with the test's socket; returns its output whatever the exit.
    pub fn crictl(&self, args: &[&str]) -> Output {
        Command::new(&self.crictl_bin)
            .arg("--config")
            .arg(self.path("crictl.yaml"))
            .args(args)
            .output()
            .expect("run crictl")
    }

    /// crictl that must succeed; its stdout.
    pub fn crictl_ok(&self, args: &[&str]) -> String {
        let started = Instant::now();
        let out = self.crictl(args);
        assert!(
            out.status.success(),
            "crictl {args:?} failed ({}): {}{}\nberth-cri log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.path("berth-cri.log")).unwrap_or_default()
        );
        println!(
            "crictl {} ({:.2}s)",
            args.join(" "),
            started.elapsed().as_secs_f64()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berthctl -n k8s.io ARGS` against the test's berthd.
    pub fn berthctl(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", "k8s.io"];
        a.extend(args);
        support::berthctl_ok(&self.berthd_socket(), &a)
    }
}

fn wait_for(
    what: &str,
    mut ready: impl FnMut() -> bool,
    child: &mut Child,
    log: &Path,
) -> Result<()> {
    // Hang guard only.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Some(status) = child.try_wait()? {
            bail!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{what} not ready within 60 s: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Root, the host tools and cri-tools, or a visible skip (`Ok(None)`).
pub fn setup(name: &str) -> Result<Option<Env>> {
    if !host::root_and_tools(
        "the CRI tests",
        &[
            "ip",
            "nsenter",
            "iptables",
            "docker-registry",
            "skopeo",
            "umoci",
        ],
    )? {
        return Ok(None);
    }
    if !Path::new("/usr/lib/cni/bridge").is_file() {
        eprintln!("SKIP: CNI plugins missing in /usr/lib/cni (Debian containernetworking-plugins, scripts/install-deps.sh)");
        return Ok(None);
    }
    let Some(crictl_bin) = cri_tool("crictl") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let netns = Netns::create(&format!("berth-cri-{name}-{}", std::process::id()))?;
    let registry = start_registry(
        &d.join("registry"),
        RegistryConfig {
            netns: Some(&netns.0),
            ..Default::default()
        },
    )?;
    // Mirror-only: every registry's images come from the loopback registry.
    std::fs::create_dir_all(d.join("certs.d/_default"))?;
    std::fs::write(
        d.join("certs.d/_default/hosts.toml"),
        format!("server = \"http://{}\"\n", registry.addr),
    )?;
    let cfg = support::write_berthd_config(
        d,
        &format!(
            "[plugins.\"berth.registry.v1\"]\nconfig_path = \"{}/certs.d\"\n",
            d.display()
        ),
    );
    let berthd = start_berthd(&netns, d, &cfg)?;
    std::fs::write(
        d.join("cri.toml"),
        format!(
            r#"[cri]
address = "{0}/cri.sock"
berthd_address = "{0}/state/berthd.sock"
netns_dir = "{0}/netns"
state_dir = "{0}/cri-state"
berthd_timeout = 120
[cri.cni]
bin_dirs = ["/usr/lib/cni", "{0}/cni-bin"]
conf_dir = "{0}/net.d"
write_default_conflist = true
default_subnet = "10.99.0.0/24"
default_bridge = "berthcri0"
default_lease_dir = "{0}/leases"
"#,
            d.display()
        ),
    )?;
    let cri = start_cri(&netns, d)?;
    std::fs::write(
        d.join("crictl.yaml"),
        format!(
            "runtime-endpoint: unix://{0}\nimage-endpoint: unix://{0}\ntimeout: 120\ndebug: false\n",
            d.join("cri.sock").display()
        ),
    )?;
    Ok(Some(Env {
        crictl_bin,
        cri: Some(cri),
        berthd: Some(berthd),
        registry,
        netns,
        dir,
    }))
}

/// Starts berthd (in `netns`, configured by `cfg`, logging to `<d>/berthd.log`, appended) and
/// waits until it answers.
fn start_berthd(netns: &Netns, d: &Path, cfg: &Path) -> Result<Proc> {
    let log = d.join("berthd.log");
    let mut child = netns
        .command(env!("CARGO_BIN_EXE_berthd"))
        .arg("--config")
        .arg(cfg)
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?,
        )
        .spawn()
        .context("spawn berthd")?;
    let sock = d.join("state/berthd.sock");
    wait_for(
        "berthd",
        || support::berthctl(&sock, &["version"]).status.success(),
        &mut child,
        &log,
    )?;
    Ok(Proc(child))
}

/// Starts berth-cri (in `netns`, configured by `<d>/cri.toml`, logging to
/// `<d>/berth-cri.log`, appended) and waits for its socket.
fn start_cri(netns: &Netns, d: &Path) -> Result<Proc> {
    let log = d.join("berth-cri.log");
    let cri_sock = d.join("cri.sock");
    // A socket file a killed berth-cri left would look ready.
    let _ = std::fs::remove_file(&cri_sock);
    let mut child = netns
        .command(env!("CARGO_BIN_EXE_berth-cri"))
        .arg("--config")
        .arg(d.join("cri.toml"))
        .arg("--log")
        .arg("info,berth_cri=debug")
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?,
        )
        .spawn()
        .context("spawn berth-cri")?;
    wait_for("berth-cri", || cri_sock.exists(), &mut child, &log)?;
    Ok(Proc(child))
}

impl Env {
    /// SIGKILLs berth-cri and starts it again: whatever it knew must come back from berthd.
    pub fn kill_and_restart_cri(&mut self) -> Result<()> {
        if let Some(mut p) = self.cri.take() {
            p.0.kill()?;
            p.0.wait()?;
        }
        self.cri = Some(start_cri(&self.netns, self.dir.path())?);
        Ok(())
    }

    /// SIGKILLs berthd and starts it again: its shims (and their containers) live on and
    /// are re-adopted.
    pub fn kill_and_restart_berthd(&mut self) -> Result<()> {
        if let Some(mut p) = self.berthd.take() {
            p.0.kill()?;
            p.0.wait()?;
        }
        let d = self.dir.path().to_owned();
        self.berthd = Some(start_berthd(&self.netns, &d, &d.join("berthd.toml"))?);
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Sandboxes a failed test left: their tasks and records, then their pins.
        if let Some(_b) = &self.berthd {
            let s = self.berthd_socket();
            let tasks = support::berthctl(&s, &["-n", "k8s.io", "tasks", "ls"]);
            for line in String::from_utf8_lossy(&tasks.stdout).lines().skip(1) {
                if let Some(id) = line.split_whitespace().next() {
                    let _ = support::berthctl(
                        &s,
                        &["-n", "k8s.io", "tasks", "kill", "-s", "KILL", "--all", id],
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = support::berthctl(&s, &["-n", "k8s.io", "tasks", "rm", id]);
                }
            }
        }
        self.cri = None;
        self.berthd = None;
        host::unmount_below(self.dir.path());
    }
}
