//! Containers and tasks on the host, as root: berthd and berthctl as child processes, a
//! busybox image built at test time from Debian's `busybox-static` (`/bin/busybox`).
//!
//! Covers `berthctl run` (output, exit codes, signals), `tasks exec`, a failed create
//! leaving the name free, containers surviving a SIGKILLed berthd (and exits recorded while
//! it was down), and the security basics (fds, /proc, masked and read-only paths, leaked
//! cwd, bind mount kinds). Skipped with a printed reason when not root or without busybox.

use berth_test_support::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{berthctl, is_root, start_berthd, Berthd};

use support::BUSYBOX;

struct Env {
    dir: tempfile::TempDir,
    d: Option<Berthd>,
}

impl Env {
    fn socket(&self) -> PathBuf {
        self.d.as_ref().unwrap().socket.clone()
    }
    fn ctl(&self, args: &[&str]) -> Output {
        berthctl(&self.socket(), args)
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "berthctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    /// `berthctl run --rm busybox ARGS…`, stdin from /dev/null.
    fn run(&self, extra: &[&str], args: &[&str]) -> Output {
        let mut a = vec!["run", "--rm"];
        a.extend(extra);
        a.push("busybox");
        a.extend(args);
        self.ctl(&a)
    }
}

/// Cleans up whatever the test left: tasks killed and deleted, containers removed, and any
/// mount under the test directory.
impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = &self.d {
            let s = d.socket.clone();
            let ls = berthctl(&s, &["tasks", "ls"]);
            for line in String::from_utf8_lossy(&ls.stdout).lines().skip(1) {
                if let Some(id) = line.split_whitespace().next() {
                    let _ = berthctl(&s, &["tasks", "kill", "-s", "KILL", "--all", id]);
                    std::thread::sleep(Duration::from_millis(50));
                    let _ = berthctl(&s, &["tasks", "rm", id]);
                }
            }
            let ls = berthctl(&s, &["containers", "ls", "-q"]);
            for id in String::from_utf8_lossy(&ls.stdout).lines() {
                let _ = berthctl(&s, &["containers", "rm", id]);
            }
        }
        self.d = None;
        // Shims a failed test left (they outlive berthd by design).
        if let Ok(nss) = std::fs::read_dir(self.dir.path().join("state/shims")) {
            for ns in nss.flatten() {
                for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    let pid = std::fs::read_to_string(c.path().join("shim.pid"))
                        .ok()
                        .and_then(|p| p.trim().parse::<i32>().ok());
                    if let Some(pid) = pid {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        // Anything still mounted below the directory (a failed test's rootfs).
        if let Ok(m) = std::fs::read_to_string("/proc/self/mounts") {
            let base = self.dir.path().display().to_string();
            let mut targets: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with(&base))
                .collect();
            targets.reverse();
            for t in targets {
                let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

fn setup() -> Option<Env> {
    setup_with("")
}

/// berthd with `extra` appended to its configuration, and the busybox image imported.
fn setup_with(extra: &str) -> Option<Env> {
    if !is_root() {
        eprintln!("SKIP: containers tests need root");
        return None;
    }
    if !Path::new(BUSYBOX).exists() {
        eprintln!(
            "SKIP: {BUSYBOX} missing (Debian package busybox-static, scripts/install-deps.sh)"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = if extra.is_empty() {
        start_berthd(dir.path())
    } else {
        support::try_start_berthd_config(dir.path(), &[], extra, None)
            .unwrap_or_else(|status| panic!("berthd exited early: {status}"))
    };
    let env = Env { dir, d: Some(d) };
    let ar = support::busybox_archive();
    let path = env.dir.path().join("busybox.tar");
    std::fs::write(&path, ar).unwrap();
    env.ok(&["images", "import", path.to_str().unwrap()]);
    Some(env)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_exec_exit_codes_and_signals() {
    let Some(env) = setup() else { return };
    let mut events = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .arg("--address")
        .arg(env.socket())
        .arg("events")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = env.run(&["--name", "hi"], &["echo", "hi"]);
    println!("run --rm echo hi: {:?}", t.elapsed());
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    // The events of that run, in order.
    std::thread::sleep(Duration::from_millis(300));
    events.kill().unwrap();
    let seen = text(&events.wait_with_output().unwrap().stdout);
    let topics: Vec<&str> = seen.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    assert_eq!(
        topics,
        [
            "/containers/create",
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete",
            "/containers/delete"
        ],
        "{seen}"
    );
    assert!(
        seen.contains(r#""container_id":"hi","exit_status":0"#),
        "{seen}"
    );
    // Exit codes and stderr pass through.
    let out = env.run(&[], &["sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "oops\n");
    // A signal to berthctl is forwarded to the container (PID 1 there gets only the signals
    // it has a handler for, like any PID 1).
    let mut child = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .arg("--address")
        .arg(env.socket())
        .args([
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    use std::io::Read;
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(child.wait().unwrap().code(), Some(42));
    // stdin passes through with -i (without, the container's stdin is /dev/null:
    // berth/tests/stdio.rs).
    let mut child = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .arg("--address")
        .arg(env.socket())
        .args(["run", "-i", "--rm", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "through stdin\n");
    // Environment, user from the container's own passwd, hostname.
    let out = env.run(
        &["-e", "GREETING=hello", "--user", "app", "--name", "envtest"],
        &[
            "sh",
            "-c",
            "echo $GREETING $(id -u):$(id -g):$(id -G) $HOME $(hostname)",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "hello 1000:1000:1000 10 /home/app envtest\n",
        "{}",
        text(&out.stderr)
    );

    // A detached container, exec into it, signals forwarded by kill.
    let id = env.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "1000"]);
    assert_eq!(id.trim(), "sleeper");
    let out = env.ctl(&[
        "tasks",
        "exec",
        "sleeper",
        "sh",
        "-c",
        "echo in-exec; exit 3",
    ]);
    assert_eq!(text(&out.stdout), "in-exec\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(3));
    let ps = env.ok(&["tasks", "ps", "sleeper"]);
    assert!(ps.lines().count() >= 2, "{ps}");
    let ls = env.ok(&["tasks", "ls"]);
    assert!(ls.contains("sleeper") && ls.contains("running"), "{ls}");
    // Pause freezes the container (the cgroup freezer), resume thaws it.
    env.ok(&["tasks", "pause", "sleeper"]);
    assert!(env.ok(&["tasks", "ls"]).contains("paused"));
    let out = env.ctl(&["tasks", "pause", "sleeper"]);
    assert!(
        text(&out.stderr).contains("is paused, not running"),
        "{}",
        text(&out.stderr)
    );
    env.ok(&["tasks", "resume", "sleeper"]);
    assert!(env.ok(&["tasks", "ls"]).contains("running"));
    // PID 1 without a handler: only SIGKILL ends it; the status is 128 + 9.
    env.ok(&["tasks", "kill", "-s", "KILL", "sleeper"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ls = env.ok(&["tasks", "ls"]);
        if ls.contains("stopped") {
            assert!(ls.contains("137"), "{ls}");
            break;
        }
        assert!(Instant::now() < deadline, "sleeper did not stop: {ls}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A container with a task cannot be removed; after the task it can.
    let out = env.ctl(&["containers", "rm", "sleeper"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("has a task"),
        "{}",
        text(&out.stderr)
    );
    let del = env.ok(&["tasks", "rm", "sleeper"]);
    assert!(del.contains("status 137"), "{del}");
    env.ok(&["containers", "rm", "sleeper"]);
    assert_eq!(env.ok(&["containers", "ls", "-q"]), "");
}

/// A container run again under the same name at once: the previous shim, still finishing
/// for a moment after its delete, must not remove the new shim's socket (same path). Seen as
/// `create task: cannot connect to …/shim.sock: No such file or directory` once runs got fast.
#[test]
fn the_same_name_again_right_after_run_rm() {
    let Some(env) = setup() else { return };
    for i in 0..20 {
        let out = env.ctl(&["run", "--rm", "--name", "again", "busybox", "echo", "again"]);
        assert!(
            out.status.success() && text(&out.stdout).trim() == "again",
            "run {i}: {} {}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

/// An image not unpacked for the container's snapshotter (imported for another one here; the
/// demo image whose unpack is still running after boot is the same case) is unpacked by the
/// create, as `ctr run` does; it used to fail with `snapshot … not found`.
#[test]
fn run_unpacks_an_image_for_another_snapshotter() {
    let Some(env) = setup() else { return };
    let out = env.ctl(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "busybox",
        "echo",
        "native",
    ]);
    assert!(
        out.status.success() && text(&out.stdout).trim() == "native",
        "run on native: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let snapshots = env.ok(&["snapshots", "--snapshotter", "native", "ls"]);
    assert!(
        snapshots.lines().count() > 1,
        "no committed snapshots in native after the run:\n{snapshots}"
    );
}

#[test]
fn failed_creates_leave_the_name_free() {
    let Some(env) = setup() else { return };
    let out = env.ctl(&["run", "--rm", "--name", "same", "no-such-image", "true"]);
    assert!(!out.status.success());
    println!("{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("no-such-image"),
        "{}",
        text(&out.stderr)
    );
    let out = env.ctl(&[
        "run", "--rm", "--name", "same", "--net", "bogus", "busybox", "true",
    ]);
    assert!(
        text(&out.stderr).contains("network \"bogus\""),
        "{}",
        text(&out.stderr)
    );
    let out = env.ctl(&[
        "run", "--rm", "--name", "same", "--user", "ghost", "busybox", "true",
    ]);
    assert!(
        text(&out.stderr).contains("no such user"),
        "{}",
        text(&out.stderr)
    );
    // A bind mount whose kinds differ.
    let src = env.dir.path().join("srcdir");
    std::fs::create_dir(&src).unwrap();
    let m = format!("type=bind,src={},dst=/etc/hostfile", src.display());
    let out = env.ctl(&[
        "run", "--rm", "--name", "same", "--mount", &m, "busybox", "true",
    ]);
    assert!(
        text(&out.stderr).contains(&format!(
            "cannot mount directory {} onto file /etc/hostfile",
            src.display()
        )),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(env.ok(&["containers", "ls", "-q"]), "");
    let out = env.ctl(&["run", "--rm", "--name", "same", "busybox", "echo", "free"]);
    assert_eq!(text(&out.stdout), "free\n", "{}", text(&out.stderr));
    // A create the executor refused leaves no cgroup behind.
    let out = env.ctl(&[
        "run",
        "--rm",
        "--name",
        "badcwd",
        "-w",
        "/etc/hostfile",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    for base in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
    ] {
        let p = Path::new(base).join("containers.slice/default-badcwd");
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn security_basics() {
    let Some(env) = setup() else { return };
    // Only 0, 1, 2 open in the container's process (ls itself holds 3, the directory it
    // reads); no pipeline, whose pipe fds the shell would hold for a moment.
    let out = env.run(&[], &["ls", "/proc/self/fd"]);
    let s = text(&out.stdout);
    println!("{s:?} / {:?}", text(&out.stderr));
    assert_eq!(s, "0\n1\n2\n3\n", "fds: {}", text(&out.stderr));
    // The default devices, and nothing else of the host's /dev.
    let out = env.run(&[], &["ls", "/dev"]);
    let devs = text(&out.stdout);
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ] {
        assert!(devs.lines().any(|l| l == d), "/dev lacks {d}: {devs}");
    }
    assert!(
        !devs
            .lines()
            .any(|l| l.starts_with("sd") || l.starts_with("vd") || l == "kmsg"),
        "{devs}"
    );
    // Its own /proc: pid 1 is the container's init, not the host's.
    let out = env.run(
        &[],
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'",
        ],
    );
    let s = text(&out.stdout);
    println!("{s:?} / {:?}", text(&out.stderr));
    assert!(s.starts_with("sh -c"), "{s} {}", text(&out.stderr));
    // Masked and read-only paths.
    let out = env.run(&[], &["sh", "-c", "cat /proc/timer_list /proc/keys | wc -c; echo 1 > /proc/sys/kernel/panic && echo WROTE; echo x > /proc/sysrq-trigger && echo WROTE2; exit 0"]);
    let s = text(&out.stdout);
    println!("{s:?} / {:?}", text(&out.stderr));
    assert!(s.starts_with("0\n"), "masked paths readable: {s}");
    assert!(!s.contains("WROTE"), "read-only path written: {s}");
    // No mounting, no unsharing (seccomp + capabilities).
    let out = env.run(
        &[],
        &["sh", "-c", "mount -t tmpfs t /tmp && echo MOUNTED; exit 0"],
    );
    assert!(!text(&out.stdout).contains("MOUNTED"));
    // The leaked-cwd class (CVE-2024-21626): a cwd of /proc/self/fd/N names a descriptor
    // the executor still holds when it changes directory; if one were a host directory,
    // climbing `..` from it would leave the rootfs. Each attempt must either fail or stay
    // inside the container (where /etc/hostfile exists; the host has none).
    assert!(!Path::new("/etc/hostfile").exists());
    for n in 3..10 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = env.run(
            &["--cwd", &cwd],
            &["sh", "-c", "cat ../../../../../../../../etc/hostfile"],
        );
        if out.status.success() {
            assert_eq!(text(&out.stdout), "a file\n", "cwd {cwd} left the rootfs");
        } else {
            println!("cwd {cwd}: refused: {}", text(&out.stderr).trim());
        }
    }
    // /proc/self/exe of the container's process is the container's busybox, and the host
    // binary of the shim is not reachable: writing through /proc/1/exe fails.
    let out = env.run(
        &[],
        &[
            "sh",
            "-c",
            "echo x >> /proc/1/exe && echo WROTE; echo x >> /proc/self/exe && echo WROTE2; exit 0",
        ],
    );
    assert!(
        !text(&out.stdout).contains("WROTE"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn the_shims_binary_is_read_only() {
    // CVE-2019-5736 class: what /proc/<pid>/exe of the shim (and of the container's init
    // before its exec) leads to is a read-only bind mount of berth's binary, so neither a
    // write through the link nor a reopen of an O_PATH descriptor after the process exits
    // can change the host's binary.
    let Some(env) = setup() else { return };
    env.ok(&["run", "-d", "--name", "ro", "busybox", "sleep", "1000"]);
    let dir = env.dir.path().join("state/shims/default/ro");
    let pid: u32 = std::fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("VmRSS: ?");
    println!("idle shim (debug build) {rss}");
    let exe = format!("/proc/{pid}/exe");
    let fd = nix::fcntl::open(
        exe.as_str(),
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let st = nix::sys::statvfs::fstatvfs(&fd).unwrap();
    assert!(
        st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the shim's binary is on a writable mount"
    );
    let reopen = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&reopen)
        .unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS) | Some(libc::ETXTBSY)),
        "{err}"
    );
    // The container's own /proc/self/exe is its busybox, not berth.
    let out = env.ctl(&["tasks", "exec", "ro", "readlink", "/proc/self/exe"]);
    assert_eq!(text(&out.stdout), "/bin/busybox\n", "{}", text(&out.stderr));
    env.ok(&["tasks", "kill", "-s", "KILL", "ro"]);
}

#[test]
fn containers_survive_a_killed_berthd() {
    let Some(mut env) = setup() else { return };
    // s4 has a CRI-length id (64 characters): its shim socket is named by a hash, so it fits
    // a unix socket path and is found again after the restart.
    let long = format!("s4{}", "x".repeat(62));
    let name_of = |i: usize| {
        if i == 4 {
            long.clone()
        } else {
            format!("s{i}")
        }
    };
    for i in 0..5 {
        let name = name_of(i);
        let cmd = if i < 2 {
            "sleep 1; exit 1$i"
        } else {
            "sleep 1000"
        };
        let cmd = cmd.replace("$i", &i.to_string());
        env.ok(&["run", "-d", "--name", &name, "busybox", "sh", "-c", &cmd]);
    }
    let d = env.d.take().unwrap();
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    let mut d = d;
    let _ = d.child.wait();
    std::mem::forget(d);
    // s0 and s1 exit while berthd is down.
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    env.d = Some(start_berthd(env.dir.path()));
    println!("berthd restart with 5 shims: {:?}", t.elapsed());
    let ls = env.ok(&["tasks", "ls"]);
    let rows: BTreeMap<String, Vec<String>> = ls
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            (f[0].clone(), f)
        })
        .collect();
    assert_eq!(rows.len(), 5, "{ls}");
    for i in 0..2 {
        let r = &rows[&format!("s{i}")];
        assert_eq!(r[2], "stopped", "{ls}");
        assert_eq!(r[3], format!("1{i}"), "{ls}");
    }
    for i in 2..5 {
        assert_eq!(rows[&name_of(i)][2], "running", "{ls}");
    }
    // Their rootfs snapshots are still recorded (the restart's reconciliation once dropped
    // every container's snapshot record: it had no snapshot.ref label).
    let snaps = env.ok(&["snapshots", "ls"]);
    for i in 0..5 {
        assert!(
            snaps
                .lines()
                .any(|l| l.starts_with(&format!("{} ", name_of(i)))),
            "{snaps}"
        );
    }
    // The re-adopted ones still work.
    for name in ["s2", long.as_str()] {
        let out = env.ctl(&["tasks", "exec", name, "echo", "alive"]);
        assert_eq!(text(&out.stdout), "alive\n", "{}", text(&out.stderr));
    }
}

/// What both runtimes print about the process they start: capability sets, ids, hostname,
/// the open-files limit, open descriptors, and the mount list's shape (mount point and type).
const PROBE: &str = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; id; hostname; \
    grep 'open files' /proc/self/limits; ls /proc/self/fd; \
    awk '{print $5, $(NF-2)}' /proc/self/mountinfo | sort";

#[test]
fn same_bundle_same_view_as_runc() {
    let Some(env) = setup() else { return };
    if Command::new("runc").arg("--version").output().is_err() {
        eprintln!("SKIP: runc not installed (Debian package runc, scripts/install-deps.sh)");
        return;
    }
    // berth's view from a container's init, then from an exec'd process, and the spec it
    // ran with (user resolved).
    let out = env.ctl(&[
        "run", "--rm", "--name", "diff", "--user", "app", "busybox", "sh", "-c", PROBE,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let berth_init = text(&out.stdout);
    env.ok(&[
        "run", "-d", "--name", "diff", "--user", "app", "busybox", "sleep", "1000",
    ]);
    let spec_path = env.dir.path().join("state/shims/default/diff/config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&spec_path).unwrap()).unwrap();
    let out = env.ctl(&["tasks", "exec", "diff", "sh", "-c", PROBE]);
    let berth = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    env.ok(&["tasks", "kill", "-s", "KILL", "diff"]);
    // runc with the same spec on a copy of the image's rootfs.
    let bundle = env.dir.path().join("runc-bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    tar::Archive::new(&support::busybox_layer()[..])
        .unpack(&rootfs)
        .unwrap();
    spec["process"]["args"] = serde_json::json!(["sh", "-c", PROBE]);
    spec["linux"]["cgroupsPath"] = serde_json::json!(format!("/berth-diff-{}", std::process::id()));
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let id = format!("berth-diff-{}", std::process::id());
    let out = Command::new("runc")
        .args([
            "--root",
            env.dir.path().join("runc-state").to_str().unwrap(),
        ])
        .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "runc: {}", text(&out.stderr));
    let runc = text(&out.stdout);
    // berth's side is an exec'd process (the harder case: it must get the container's user,
    // capabilities and seccomp profile too), runc's the init of the same spec.
    // The rootfs itself differs on purpose: berth's is the overlay snapshot, runc's a plain
    // directory.
    let drop_root = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("/ "))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let (berth, runc) = (drop_root(&berth), drop_root(&runc));
    assert_eq!(
        drop_root(&berth_init),
        berth,
        "berth's init and exec'd process differ"
    );
    if berth != runc {
        let b: Vec<&str> = berth.lines().collect();
        let r: Vec<&str> = runc.lines().collect();
        let only_b: Vec<&&str> = b.iter().filter(|l| !r.contains(l)).collect();
        let only_r: Vec<&&str> = r.iter().filter(|l| !b.contains(l)).collect();
        panic!("berth and runc differ:\nonly berth: {only_b:#?}\nonly runc: {only_r:#?}");
    }
    println!("berth and runc agree on:\n{berth}");
}

/// Waits until `tasks ls` shows task `id` stopped; returns its row.
fn wait_stopped(env: &Env, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ls = env.ok(&["tasks", "ls"]);
        if let Some(row) = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id) && l.contains("stopped"))
        {
            return row.to_owned();
        }
        assert!(Instant::now() < deadline, "{id} did not stop: {ls}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn runc_runtime_handler() {
    if Command::new("runc").arg("--version").output().is_err() {
        eprintln!("SKIP: runc not installed (Debian package runc, scripts/install-deps.sh)");
        return;
    }
    let runc = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v runc"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let extra = format!(
        "[plugins.\"berth.runtime.v1\".runtimes.runc]\nbinary = \"{}\"\n",
        runc.trim()
    );
    let Some(env) = setup_with(&extra) else {
        return;
    };
    // Output, stderr and the exit code through runc.
    let t = Instant::now();
    let out = env.run(
        &["--runtime", "runc"],
        &["sh", "-c", "echo hi; echo oops >&2; exit 3"],
    );
    println!("run --rm --runtime runc: {:?}", t.elapsed());
    assert_eq!(text(&out.stdout), "hi\n", "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(3));
    // The container records its handler; exec joins it with the container's user.
    env.ok(&[
        "run",
        "-d",
        "--runtime",
        "runc",
        "--user",
        "app",
        "--name",
        "rc",
        "busybox",
        "sleep",
        "1000",
    ]);
    let info = env.ok(&["containers", "info", "rc"]);
    assert!(info.contains(r#""runtime": "runc""#), "{info}");
    assert!(
        env.dir.path().join("state/shims/default/rc/runc").is_dir(),
        "runc's state is not under the shim's directory"
    );
    let out = env.ctl(&["tasks", "exec", "rc", "sh", "-c", "id -u; exit 5"]);
    assert_eq!(text(&out.stdout), "1000\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(5));
    // Pause and resume go through runc too.
    env.ok(&["tasks", "pause", "rc"]);
    assert!(env.ok(&["tasks", "ls"]).contains("paused"));
    env.ok(&["tasks", "resume", "rc"]);
    // Kill: the exit status collected by the shim as subreaper.
    env.ok(&["tasks", "kill", "-s", "KILL", "rc"]);
    let row = wait_stopped(&env, "rc");
    assert!(row.contains("137"), "{row}");
    let del = env.ok(&["tasks", "rm", "rc"]);
    assert!(del.contains("status 137"), "{del}");
    env.ok(&["containers", "rm", "rc"]);
    // An unknown handler is named in the error, and leaves the name free.
    let out = env.ctl(&[
        "run",
        "--rm",
        "--name",
        "rc",
        "--runtime",
        "crun",
        "busybox",
        "true",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(r#"runtime handler "crun" is not configured"#),
        "{err}"
    );
    assert!(err.contains(r#""runc""#), "{err}");
    assert_eq!(env.ok(&["containers", "ls", "-q"]), "");
}

#[test]
fn logs_tail_follow_and_rotation() {
    let Some(env) = setup() else { return };
    // More than the 1 MiB cap: 1,200,000 bytes of numbered lines rotate the log once.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 100000 ]; do echo \"line $i ---\"; i=$((i+1)); done; \
         while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after",
    ]);
    let dir = env.dir.path().join("state/shims/default/talk");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read(dir.join("log"))
        .unwrap_or_default()
        .ends_with(b"line 99999 ---\n")
    {
        assert!(Instant::now() < deadline, "the writer did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dir.join("log.1").exists(), "the log did not rotate");
    let all = env.ok(&["tasks", "logs", "talk"]);
    let lines: Vec<&str> = all.lines().collect();
    // What is kept: the rotated file and the current one, contiguous, ending at the last line.
    assert_eq!(lines.last(), Some(&"line 99999 ---"));
    let first: usize = lines[0].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        lines.len(),
        100000 - first,
        "lines lost across the rotation"
    );
    assert!(all.len() as u64 > 1 << 20, "only {} bytes kept", all.len());
    assert_eq!(
        env.ok(&["tasks", "logs", "--tail", "2", "talk"]),
        "line 99998 ---\nline 99999 ---\n"
    );
    // --follow prints what comes next and ends with the task.
    let follower = Command::new(env!("CARGO_BIN_EXE_berthctl"))
        .arg("--address")
        .arg(env.socket())
        .args(["tasks", "logs", "-f", "--tail", "1", "talk"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["tasks", "exec", "talk", "touch", "/tmp/go"]);
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "line 99999 ---\nafter\n");
    wait_stopped(&env, "talk");
    env.ok(&["tasks", "rm", "talk"]);
    let out = env.ctl(&["tasks", "logs", "talk"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("talk"), "{}", text(&out.stderr));
}

#[test]
fn metrics_of_a_running_task() {
    let Some(env) = setup() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "m",
        "--pids-limit",
        "50",
        "busybox",
        "sh",
        "-c",
        "sleep 1000 & sleep 1000 & wait",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let out = env.ctl(&["tasks", "metrics", "--format", "json", "m"]);
    let err = text(&out.stderr);
    if !out.status.success() && err.contains("this host runs cgroup v1") {
        println!("metrics not available here: {err}");
    } else {
        assert!(out.status.success(), "{err}");
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        println!("metrics: {j}");
        assert_eq!(j["container_id"], "m");
        assert_eq!(j["cgroup_path"], "/containers.slice/default-m/init");
        assert_eq!(j["pids"]["current"], 3, "{j}");
        assert_eq!(j["pids"]["limit"], 50, "{j}");
        assert!(j["memory"]["usage"].as_u64().unwrap() > 0, "{j}");
        let table = env.ok(&["tasks", "metrics", "m"]);
        assert!(table.contains("pids.current"), "{table}");
    }
    // A bad --format is a usage error, like every verb's.
    let out = env.ctl(&["tasks", "metrics", "--format", "yaml", "m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid value 'yaml' for '--format <FORMAT>'"),
        "{}",
        text(&out.stderr)
    );
    env.ok(&["tasks", "kill", "-s", "KILL", "--all", "m"]);
    wait_stopped(&env, "m");
    env.ok(&["tasks", "rm", "m"]);
    let out = env.ctl(&["tasks", "metrics", "m"]);
    assert!(!out.status.success());
}
