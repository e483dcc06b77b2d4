//! Container stdio over the API (issue 16), on the host as root: berthd and berthctl as child
//! processes, the busybox image of the other container tests. Nothing here gives berthctl a
//! path on the node: stdout, stderr, stdin, its end, terminal sizes and the exit status all
//! travel over the ttrpc connection (`Tasks.Attach`).
//!
//! Covers `run --rm` output and exit codes (also 128 + signal), stdout apart from stderr,
//! stdin and its end of file with `-i` (and /dev/null without), 50 MB through `head -c`
//! compared by sha256, output written just before the exit, `tasks attach` to a running
//! container (a second attach after the first client was killed, the container still going),
//! a berthd restart in the middle, the clear refusals (`-t` or `-i` a task was not started
//! with), berth-api's in-process client (ExecSync's shape), and interactive `run -it` and
//! `tasks exec -it` driven through a real pty: arithmetic, `stty size`, a resize, exit codes,
//! the detach keys. Skipped with a printed reason when not root or without busybox.

use berth_test_support::pty::Pty;
use berth_test_support::support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::{berthctl, is_root, start_berthd, Berthd, BUSYBOX};

const WAIT: Duration = Duration::from_secs(60);

struct Env {
    dir: tempfile::TempDir,
    d: Option<Berthd>,
}

impl Env {
    fn new() -> Option<Env> {
        if !is_root() {
            eprintln!("SKIP: stdio tests need root");
            return None;
        }
        if !Path::new(BUSYBOX).exists() {
            eprintln!("SKIP: {BUSYBOX} missing (Debian package busybox-static)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = start_berthd(dir.path());
        let env = Env { dir, d: Some(d) };
        let path = env.dir.path().join("busybox.tar");
        std::fs::write(&path, support::busybox_archive()).unwrap();
        env.ok(&["images", "import", path.to_str().unwrap()]);
        Some(env)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("state/berthd.sock")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berthctl"));
        c.arg("--address").arg(self.socket()).args(args);
        c
    }

    fn ctl(&self, args: &[&str]) -> Output {
        berthctl(&self.socket(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "berthctl {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// berthctl `args` with `input` on its stdin.
    fn with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        out
    }

    /// Stops berthd with `sig` (returns how long it took to exit) and starts it again.
    fn restart_berthd(&mut self, sig: nix::sys::signal::Signal) -> Duration {
        let mut d = self.d.take().unwrap();
        let t = Instant::now();
        nix::sys::signal::kill(d.pid(), sig).unwrap();
        d.child.wait().unwrap();
        let took = t.elapsed();
        // Reaped: its Drop must not signal a pid that may be someone else's by now.
        std::mem::forget(d);
        self.d = Some(start_berthd(self.dir.path()));
        took
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.d.is_some() {
            for line in self.ok(&["tasks", "ls"]).lines().skip(1) {
                if let Some(id) = line.split_whitespace().next() {
                    let _ = self.ctl(&["tasks", "kill", "-s", "KILL", "--all", id]);
                    std::thread::sleep(Duration::from_millis(100));
                    let _ = self.ctl(&["tasks", "rm", id]);
                }
            }
            for id in self.ok(&["containers", "ls", "-q"]).lines() {
                let _ = self.ctl(&["containers", "rm", id]);
            }
        }
        self.d = None;
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn run_streams_output_stdin_and_exit_status() {
    let Some(env) = Env::new() else { return };
    let t = Instant::now();
    let out = env.ctl(&["run", "--rm", "busybox", "echo", "hi"]);
    println!("run --rm echo hi: {:?}", t.elapsed());
    assert_eq!(text(&out.stdout), "hi\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    // Exit codes, and stdout apart from stderr.
    let out = env.ctl(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("out\n".into(), "err\n".into(), Some(7))
    );
    // stdin with -i, its end of file reaching the container; without -i, /dev/null.
    let out = env.with_stdin(&["run", "-i", "--rm", "busybox", "cat"], b"data\n");
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        ("data\n".into(), Some(0))
    );
    let out = env.with_stdin(&["run", "--rm", "busybox", "cat"], b"ignored\n");
    assert_eq!((text(&out.stdout), out.status.code()), ("".into(), Some(0)));
    // Output written just before the exit arrives whole, several times over.
    let script =
        "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done; echo gone >&2; exit 9";
    for _ in 0..3 {
        let out = env.ctl(&["run", "--rm", "busybox", "sh", "-c", script]);
        let stdout = text(&out.stdout);
        assert_eq!(stdout.lines().count(), 3000, "{}", text(&out.stderr));
        assert!(stdout.ends_with("line 2999\n"));
        assert_eq!(
            (text(&out.stderr), out.status.code()),
            ("gone\n".into(), Some(9))
        );
    }
    // 50 MB through `head -c`, compared by sha256 (the window and the queues keep memory
    // bounded; nothing may be dropped).
    let size = 50 << 20;
    let unit = b"0123456789abcdef\n";
    let mut want = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(unit.len());
        want.update(&unit[..n]);
        left -= n;
    }
    let t = Instant::now();
    let cmd = format!("busybox yes 0123456789abcdef | busybox head -c {size}");
    let out = env.ctl(&["run", "--rm", "busybox", "sh", "-c", &cmd]);
    let took = t.elapsed();
    assert_eq!(out.stdout.len(), size, "{}", text(&out.stderr));
    assert_eq!(Sha256::digest(&out.stdout), want.finalize());
    println!("50 MiB through run --rm: {took:?}");
    // 4 MiB of stdin through `cat`, back complete (stdin credit both ways at once).
    let input: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    let out = env.with_stdin(&["run", "-i", "--rm", "busybox", "cat"], &input);
    assert_eq!(out.stdout.len(), input.len());
    assert!(out.stdout == input, "stdin came back changed");
    // Killed by a signal: 128 + 9.
    let name = "sleeper";
    let mut child = env
        .cmd(&["run", "--rm", "--name", name, "busybox", "sleep", "1000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the sleeper runs", || {
        env.ok(&["tasks", "ls"]).contains("running")
    });
    env.ok(&["tasks", "kill", "-s", "KILL", name]);
    assert_eq!(child.wait().unwrap().code(), Some(137));
    // An exec: output, stdin, exit status, a signal (an exec'd process is no PID 1).
    env.ok(&["run", "-d", "--name", "host", "busybox", "sleep", "1000"]);
    let out = env.with_stdin(
        &[
            "tasks",
            "exec",
            "-i",
            "host",
            "sh",
            "-c",
            "cat; echo e >&2; exit 4",
        ],
        b"to exec\n",
    );
    assert_eq!(
        (text(&out.stdout), text(&out.stderr), out.status.code()),
        ("to exec\n".into(), "e\n".into(), Some(4))
    );
    let out = env.ctl(&["tasks", "exec", "host", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", text(&out.stderr));
    let out = env.ctl(&["tasks", "exec", "host", "sh", "-c", script]);
    assert_eq!(text(&out.stdout).lines().count(), 3000);
    assert_eq!(out.status.code(), Some(9));
}

#[test]
fn attach_detach_and_restart() {
    let Some(mut env) = Env::new() else { return };
    let ticker = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    env.ok(&[
        "run", "-d", "-i", "--name", "tick", "busybox", "sh", "-c", ticker,
    ]);
    // A client that sees output, then is killed mid-run.
    let attach = |env: &Env| {
        let mut c = env
            .cmd(&["tasks", "attach", "tick"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = c.stdout.take().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while text(&got).matches("tick").count() < 3 {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "attach ended: {}", text(&got));
            got.extend_from_slice(&buf[..n]);
        }
        (c, got)
    };
    let (mut first, _) = attach(&env);
    first.kill().unwrap();
    first.wait().unwrap();
    // The container goes on, and a second client sees it.
    let (mut second, got) = attach(&env);
    assert!(text(&got).contains("tick"), "{}", text(&got));
    // SIGINT detaches `tasks attach` (exit 0) and leaves the container running.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(second.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = second.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(env.ok(&["tasks", "ls"]).contains("running"));
    // A client that stops reading slows a chatty container down (backpressure: nothing is
    // dropped), and once it dies the container goes on (it never wedges it).
    env.ok(&["run", "-d", "--name", "yes", "busybox", "busybox", "yes"]);
    let log_size = |env: &Env| {
        let d = env.dir.path().join("state/shims/default/yes");
        let len = |f: &str| std::fs::metadata(d.join(f)).map_or(0, |m| m.len());
        len("log") + len("log.1")
    };
    let mut stalled = env
        .cmd(&["tasks", "attach", "yes"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let held = log_size(&env);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        log_size(&env),
        held,
        "a client that does not read holds the output back"
    );
    stalled.kill().unwrap();
    stalled.wait().unwrap();
    wait_until("the chatty container goes on", || log_size(&env) != held);
    // Refusals that name the cause.
    let out = env.ctl(&["tasks", "attach", "-t", "tick"]);
    assert!(
        text(&out.stderr).contains("has no terminal"),
        "{}",
        text(&out.stderr)
    );
    let out = env.ctl(&["tasks", "attach", "-i", "yes"]);
    assert!(
        text(&out.stderr).contains("has no stdin"),
        "{}",
        text(&out.stderr)
    );
    let out = env.ctl(&["tasks", "attach", "nope"]);
    assert!(
        text(&out.stderr).contains("NOT_FOUND"),
        "{}",
        text(&out.stderr)
    );
    // stdin through a later attach (the task was started with -i), then its end: the
    // container's shell sees the line and its end of file.
    env.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "reader",
        "busybox",
        "sh",
        "-c",
        "read l; echo got $l; cat",
    ]);
    let out = env.with_stdin(&["tasks", "attach", "-i", "reader"], b"one\n");
    assert_eq!(
        (text(&out.stdout), out.status.code()),
        ("got one\n".into(), Some(0))
    );
    // berthd killed and started again: the container never noticed; attach works again.
    let during = env
        .cmd(&["tasks", "attach", "tick"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    env.restart_berthd(nix::sys::signal::Signal::SIGKILL);
    let out = during.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "an attach across a berthd restart ends with an error"
    );
    // A berthd stopped with SIGTERM ends its attaches at once, saying why (ttrpc alone
    // would hold the stop 10 s for each open stream).
    let during = env
        .cmd(&["tasks", "attach", "tick"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let took = env.restart_berthd(nix::sys::signal::Signal::SIGTERM);
    println!("berthd SIGTERM with an attach open: exited in {took:?}");
    let out = during.wait_with_output().unwrap();
    assert!(
        text(&out.stderr).contains("berthd is stopping; the process goes on"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(8),
        "berthd took {took:?} to stop"
    );
    let (mut after, got) = attach(&env);
    assert!(text(&got).contains("tick"));
    let _ = after.kill();
    let _ = after.wait();
}

#[test]
fn api_client_in_process() {
    let Some(env) = Env::new() else { return };
    env.ok(&["run", "-d", "--name", "svc", "busybox", "sleep", "1000"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use berth_api::client::stdio::{attach, AttachOptions};
        use berth_api::proto::{tasks as pb, tasks_ttrpc::TasksClient};
        let c = berth_api::client::connect(env.socket().to_str().unwrap(), WAIT)
            .await
            .unwrap();
        let tasks = TasksClient::new(c);
        let ctx = || berth_api::keys::context("default", Duration::ZERO);
        let req = pb::ExecProcessRequest {
            container_id: "svc".into(),
            exec_id: "sync1".into(),
            args: vec![
                "sh".into(),
                "-c".into(),
                "busybox tr a-z A-Z; echo bye >&2; exit 2".into(),
            ],
            stdin: true,
            ..Default::default()
        };
        tasks.exec(ctx(), &req).await.unwrap();
        let opts = AttachOptions::new("svc").exec("sync1").stdin(true);
        let s = attach(&tasks, ctx(), opts).await.unwrap();
        assert_eq!(s.pid, 0, "not started yet");
        let start = pb::StartRequest {
            container_id: "svc".into(),
            exec_id: "sync1".into(),
            ..Default::default()
        };
        tasks.start(ctx(), &start).await.unwrap();
        let got = s.collect(Some(b"quiet\n".to_vec())).await.unwrap();
        assert_eq!(got.exit, Some(2));
        assert_eq!(text(&got.stdout), "QUIET\n");
        assert_eq!(text(&got.stderr), "bye\n");
        // A tty asked of a process without one: FAILED_PRECONDITION, said plainly.
        let e = attach(&tasks, ctx(), AttachOptions::new("svc").tty(true, None))
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("has no terminal"), "{e}");
    });
}

/// `berthctl ARGS` on a new pty of 100x30.
fn on_pty(env: &Env, args: &[&str]) -> Pty {
    Pty::spawn(env.cmd(args), 100, 30).unwrap()
}

#[test]
fn interactive_terminals_through_a_pty() {
    let Some(env) = Env::new() else { return };
    let t = Instant::now();
    let mut p = on_pty(&env, &["run", "-it", "--rm", "busybox", "sh"]);
    let at = p.expect(0, "# ", WAIT);
    p.write("echo $((6*7))\r");
    let at = p.expect(at, "42", WAIT);
    p.write("busybox stty size\r");
    let at = p.expect(at, "30 100", WAIT);
    // The window size follows ours (SIGWINCH → resize).
    p.resize(120, 40);
    std::thread::sleep(Duration::from_millis(300));
    p.write("busybox stty size\r");
    let at = p.expect(at, "40 120", WAIT);
    // A terminal: job control and a tty name, line editing's ^C kills the foreground job.
    p.write("busybox tty\r");
    let _ = p.expect(at, "/dev/pts/", WAIT);
    p.write("exit 3\r");
    assert_eq!(p.wait(WAIT).code(), Some(3));
    println!("run -it session: {:?}", t.elapsed());

    // tasks exec -it, and the detach keys of an attach.
    env.ok(&["run", "-d", "-it", "--name", "box", "busybox", "sh"]);
    let mut p = on_pty(&env, &["tasks", "exec", "-it", "box", "sh"]);
    let at = p.expect(0, "# ", WAIT);
    p.write("echo $((6*7)); busybox stty size\r");
    let _ = p.expect(at, "30 100", WAIT);
    p.write("exit 5\r");
    assert_eq!(p.wait(WAIT).code(), Some(5));
    let mut p = on_pty(&env, &["tasks", "attach", "-it", "box"]);
    std::thread::sleep(Duration::from_millis(300));
    p.write("echo attached-$((2+3))\r");
    let at = p.expect(0, "attached-5", WAIT);
    p.write("\x10\x11");
    assert_eq!(p.wait(WAIT).code(), Some(0));
    assert!(p.screen()[at..].contains("detached"), "{}", p.screen());
    assert!(env.ok(&["tasks", "ls"]).contains("running"));
    // -it needs a terminal on stdin.
    let out = env.with_stdin(&["run", "-it", "--rm", "busybox", "true"], b"");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not a terminal"),
        "{}",
        text(&out.stderr)
    );
}

/// The remote API (mutual TLS, the listener in-process in front of this berthd, an operator
/// certificate): a container run from an image with stdin, its end, stdout, stderr and the
/// exit status through berth-api's client, and a tty refused plainly — the same stream as on
/// the local socket, relayed frame by frame by the listener.
#[test]
fn through_the_remote_api() {
    let Some(env) = Env::new() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use berth_api::client::stdio::{attach, AttachOptions};
        use berth_api::proto::{containers as cpb, containers_ttrpc, tasks as pb, tasks_ttrpc};
        use berth_remote::pki::{Ca, Validity};
        use berth_remote::tls::{server_config, Credentials};
        use berth_remote::{Backends, DenyList, Limits, Listener, ListenerConfig, Live};
        let v = Validity::days(1);
        let ca = Ca::create("stdio test fleet", v).unwrap();
        let lo = ["127.0.0.1".parse().unwrap()];
        let node = ca.issue_node("node-a", &["node-a".into()], &lo, v).unwrap();
        let op = ca
            .issue_client("otto", berth_remote::roles::Role::Operator, v)
            .unwrap();
        let creds = |who: &berth_remote::pki::Issued| {
            Credentials::from_pem(ca.cert_pem(), &who.cert_pem, &who.key_pem).unwrap()
        };
        let live = Live {
            tls: server_config(&creds(&node)).unwrap(),
            deny: DenyList::default(),
        };
        let cfg = ListenerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            backends: Backends {
                berthd: env.socket(),
                init: env.dir.path().join("no-init.sock"),
            },
            limits: Limits::default(),
        };
        let listener = Listener::bind(cfg, live).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(listener.serve(std::future::pending()));
        let c = berth_remote::client::connect(&addr, "node-a", &creds(&op), WAIT)
            .await
            .unwrap();
        let ctx = || berth_api::keys::context("default", Duration::ZERO);
        let create = cpb::CreateContainerRequest {
            container: Some(cpb::Container {
                id: "remote1".into(),
                image: "busybox".into(),
                ..Default::default()
            })
            .into(),
            options: Some(cpb::RunOptions {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "cat; echo done >&2; exit 6".into(),
                ],
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        containers_ttrpc::ContainersClient::new(c.clone())
            .create(ctx(), &create)
            .await
            .unwrap();
        let tasks = tasks_ttrpc::TasksClient::new(c);
        let req = pb::CreateTaskRequest {
            container_id: "remote1".into(),
            stdin: true,
            ..Default::default()
        };
        tasks.create(ctx(), &req).await.unwrap();
        let e = attach(&tasks, ctx(), AttachOptions::new("remote1").tty(true, None))
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("has no terminal"), "{e}");
        let s = attach(&tasks, ctx(), AttachOptions::new("remote1").stdin(true))
            .await
            .unwrap();
        let start = pb::StartRequest {
            container_id: "remote1".into(),
            ..Default::default()
        };
        tasks.start(ctx(), &start).await.unwrap();
        let t = Instant::now();
        let input: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
        let got = s.collect(Some(input.clone())).await.unwrap();
        println!("1 MiB through cat over the remote API: {:?}", t.elapsed());
        assert_eq!(got.exit, Some(6));
        assert!(
            got.stdout == input,
            "stdout differs ({} bytes)",
            got.stdout.len()
        );
        assert_eq!(text(&got.stderr), "done\n");
    });
}
