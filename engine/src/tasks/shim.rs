//! The shim: one process per container, started by berthd as `berth-shim` (the same
//! binary). It double-forks and leaves berthd's session, so it survives berthd; becomes the
//! child subreaper, so the container's processes are its children whatever the executor's
//! forking does; goes into `containers.slice/<ns>-<id>/shim` on a cgroup v2 host; creates the
//! container with youki's `libcontainer` *before* it starts any thread (libcontainer clones
//! the calling process); then serves the shim API (`berth.shim.v1`) on `shim.sock`.
//!
//! It owns the init's stdio: stdout and stderr go through pipes into a size-capped log file
//! (`log`, one rotation to `log.1`) and, when berthd passed FIFO paths, to the client's
//! FIFOs; stdin comes from a FIFO or `/dev/null`. Each exit is recorded in `exit` (written,
//! fsynced, renamed, directory fsynced) before any waiter is told, so a berthd that was down
//! reads it after its restart. Extra processes (`Exec`) are created by a short-lived helper
//! (`berth-shim exec …`, single-threaded, again because libcontainer clones its caller),
//! which reports the new pid and exits; the process is then re-parented to the shim.
//!
//! Startup protocol with berthd: the shim's stdout is a pipe on which it writes one line,
//! `ok <pid>` once the container exists and the socket listens, or `error: <message>`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use clap::Parser;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::watch;
use ttrpc::r#async::TtrpcContext;

use super::{exit_code, Error};
use berth_api::proto::{shim as pb, shim_ttrpc};

/// Largest container log file before it is rotated to `log.1`.
pub const LOG_CAP: u64 = 1 << 20;

/// `berth-shim` command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth-shim",
    about = "berth's per-container shim (started by berthd)"
)]
struct Args {
    #[command(subcommand)]
    command: ShimCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ShimCommand {
    /// Create the container of the bundle in DIR and serve it.
    Serve(ServeArgs),
    /// (internal) Create an extra process in a running container and print its pid.
    Exec(ExecArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[arg(long)]
    namespace: String,
    #[arg(long)]
    id: String,
    /// The bundle and the shim's directory.
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value = "")]
    stdin: String,
    #[arg(long, default_value = "")]
    stdout: String,
    #[arg(long, default_value = "")]
    stderr: String,
    /// An external OCI runtime binary with runc's command line (absent: the built-in
    /// libcontainer executor).
    #[arg(long)]
    runtime_binary: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    root: PathBuf,
    /// JSON: {"args":[..],"env":[..],"cwd":".."}
    #[arg(long)]
    process: String,
    /// The container's config.json: the exec'd process gets its user and seccomp profile.
    #[arg(long)]
    spec: PathBuf,
}

/// The recorded end of a process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub pid: u32,
    pub exit_status: u32,
    /// Unix nanoseconds.
    pub exited_at: i64,
}

/// Reads a recorded exit (`None` when there is none yet).
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(dir.join("exit")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `rec` durably: temporary file, fsync, rename, fsync of the directory.
pub fn write_exit(dir: &Path, rec: &ExitRecord) -> std::io::Result<()> {
    let tmp = dir.join("exit.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(rec).expect("plain values serialize"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("exit"))?;
    File::open(dir)?.sync_all()
}

/// Runs the shim (argv including argv[0]); returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return 2;
        }
    };
    match args.command {
        ShimCommand::Serve(a) => serve(a),
        ShimCommand::Exec(a) => match exec_helper(&a) {
            Ok(pid) => {
                println!("{pid}");
                0
            }
            Err(e) => {
                println!("error: {}", crate::metadata::chain(&e));
                1
            }
        },
    }
}

fn nanos_now() -> i64 {
    crate::storage_api::nanos(SystemTime::now())
}

fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Environment variable marking a shim that already runs from its read-only binary.
const SEALED_ENV: &str = "BERTH_SHIM_SEALED";

/// Re-executes the shim from a read-only bind mount of its own binary, in a private mount
/// namespace, so that no process of the container can write the host's berth binary
/// through `/proc/<pid>/exe` — the CVE-2019-5736 class: the container's init is a clone of
/// the shim until it execs, and an entrypoint of `/proc/self/exe` would exec the shim's
/// binary inside the container. A write through that magic link then meets the read-only
/// mount (EROFS), including after the process exits (the O_PATH-then-reopen trick). runc
/// did the same with a read-only bind mount before moving to memfd copies; a bind mount
/// costs no memory per shim, a memfd copy costs the binary's size.
fn seal_exe(dir: &Path) -> Result<(), Error> {
    use nix::mount::{mount, MsFlags};
    if std::env::var_os(SEALED_ENV).is_some() {
        return Ok(());
    }
    let sys = |what: &str| {
        let what = what.to_owned();
        move |e: nix::errno::Errno| Error::Io {
            what,
            source: e.into(),
        }
    };
    // The path, not the magic link: /proc/self/exe refers to a mount of the namespace left
    // behind, which cannot be bind-mounted from the new one.
    let exe = std::fs::read_link("/proc/self/exe").map_err(io_err("read /proc/self/exe"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare the shim's mount namespace"))?;
    // Nothing mounted below may leak back to the host; the host's unmounts still come in.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("make / a slave mount"))?;
    let target = dir.join(".exe");
    File::create(&target).map_err(io_err(format!("create {}", target.display())))?;
    mount(
        Some(&exe),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys("bind-mount the shim's binary"))?;
    mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(sys("make the shim's binary read-only"))?;
    let err = std::process::Command::new(&target)
        .arg0(super::SHIM_ARGV0)
        .args(std::env::args_os().skip(1))
        .env(SEALED_ENV, "1")
        .exec();
    Err(Error::Io {
        what: format!("re-execute the shim from {}", target.display()),
        source: err,
    })
}

/// The command berthd starts a shim with: already sealed, in one `execve` instead of two.
/// The forked child makes the same read-only bind mount as [`seal_exe`] (own mount namespace,
/// `/` a slave, the binary bind-mounted read-only on `<dir>/.exe`), after `setsid()`, and
/// then executes `<dir>/.exe` itself — the path resolves in the new namespace, so the
/// first image of the shim is the read-only one. Saves the shim's re-execution of a
/// multi-megabyte binary on every container start.
pub fn sealed_command(dir: &Path) -> Result<std::process::Command, Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let exe = std::fs::read_link("/proc/self/exe").map_err(io_err("read /proc/self/exe"))?;
    let target = dir.join(".exe");
    File::create(&target).map_err(io_err(format!("create {}", target.display())))?;
    let c =
        |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::BadPath(p.to_owned()));
    let (exe_c, target_c, root_c) = (c(&exe)?, c(&target)?, c(Path::new("/"))?);
    let mut cmd = std::process::Command::new(&target);
    cmd.arg0(super::SHIM_ARGV0).env(SEALED_ENV, "1");
    // SAFETY: the closure runs in the forked child before exec and makes only raw system
    // calls (setsid, unshare, mount) on C strings built before the fork: no allocation and
    // no lock, as required after fork in a multi-threaded process. `last_os_error` reads
    // errno without allocating.
    unsafe {
        cmd.pre_exec(move || {
            let null = std::ptr::null::<libc::c_char>();
            let check = |r: libc::c_int| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::setsid())?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                null,
                root_c.as_ptr(),
                null,
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                exe_c.as_ptr(),
                target_c.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                null,
                target_c.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            ))
        });
    }
    Ok(cmd)
}

fn serve(a: ServeArgs) -> i32 {
    if let Err(e) = seal_exe(&a.dir) {
        report(&format!("error: {}", crate::metadata::chain(&e)));
        return 1;
    }
    // Leave berthd: fork once more so the shim is no session leader's child that berthd
    // waits for; berthd's Command ran setsid() already.
    // SAFETY: no thread exists yet in this process (the shim starts none before this), so
    // the child may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            report(&format!("error: fork: {e}"));
            return 1;
        }
    }
    match start(&a) {
        Ok(()) => 0,
        Err(e) => {
            report(&format!("error: {}", crate::metadata::chain(&e)));
            1
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
        what: "create a pipe".into(),
        source: e.into(),
    })
}

/// Puts the shim into `containers.slice/<ns>-<id>/shim` on a cgroup v2 host.
fn place_in_cgroup(ns: &str, id: &str) {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        tracing::info!("cgroup v2 is not mounted at /sys/fs/cgroup (v1 or hybrid host): the shim stays in berthd's cgroup");
        return;
    }
    let dir = root.join(format!("containers.slice/{ns}-{id}/shim"));
    let r = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()));
    if let Err(e) = r {
        tracing::warn!(cgroup = %dir.display(), "cannot place the shim in its cgroup: {e}");
    }
}

/// Removes `containers.slice/<ns>-<id>` (v2) or its per-controller copies (v1), best effort
/// (a cgroup that still has processes stays).
pub fn remove_cgroups(ns: &str, id: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let rel = format!("containers.slice/{ns}-{id}");
    let mut dirs = vec![root.join(&rel)];
    if let Ok(rd) = std::fs::read_dir(root) {
        dirs.extend(rd.flatten().map(|e| e.path().join(&rel)));
    }
    for d in dirs {
        let _ = std::fs::remove_dir(d.join("shim"));
        let _ = std::fs::remove_dir(d.join("init"));
        let _ = std::fs::remove_dir(&d);
    }
}

/// Opens FIFO `path` for writing, waiting up to 10 s for its reader.
fn open_fifo_writer(path: &str) -> Option<File> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => {
                let _ = nix::fcntl::fcntl(
                    f.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                );
                return Some(f);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if std::time::Instant::now() > deadline {
                    tracing::warn!(fifo = path, "no reader came: output goes to the log only");
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!(fifo = path, "cannot open: {e}");
                return None;
            }
        }
    }
}

/// The size-capped container log shared by the output copiers.
struct Log {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Log {
    fn open(path: PathBuf) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self { path, file, size }
    }

    fn write(&mut self, data: &[u8]) {
        if self.size + data.len() as u64 > LOG_CAP {
            let _ = std::fs::rename(&self.path, self.path.with_extension("1"));
            *self = Self::open(self.path.clone());
            self.size = 0;
        }
        if let Some(f) = &mut self.file {
            if f.write_all(data).is_ok() {
                self.size += data.len() as u64;
            }
        }
    }
}

/// Copies `from` into the log and, when given, the FIFO; returns when `from` ends.
fn copy_out(from: OwnedFd, fifo: String, log: Arc<Mutex<Log>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = File::from(from);
        let mut to = if fifo.is_empty() {
            None
        } else {
            open_fifo_writer(&fifo)
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            log.lock().expect("log lock").write(&buf[..n]);
            if let Some(t) = &mut to {
                if t.write_all(&buf[..n]).is_err() {
                    to = None; // the reader went away; keep logging
                }
            }
        }
    })
}

/// Copies FIFO `path` into `to` until the writer closes it.
fn copy_in(path: String, to: OwnedFd) {
    std::thread::spawn(move || {
        let mut to = File::from(to);
        if let Ok(mut from) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            let _ = std::io::copy(&mut from, &mut to);
        }
    });
}

/// Stdio of one process: the fds it gets, and the shim's ends set to copying.
struct Stdio {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn stdio(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    log: &Arc<Mutex<Log>>,
    copiers: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<Stdio, Error> {
    let child_in: OwnedFd = if stdin.is_empty() {
        File::open("/dev/null")
            .map_err(io_err("open /dev/null"))?
            .into()
    } else {
        let (r, w) = pipe()?;
        copy_in(stdin.to_owned(), w);
        r
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    copiers.push(copy_out(out_r, stdout.to_owned(), log.clone()));
    copiers.push(copy_out(err_r, stderr.to_owned(), log.clone()));
    Ok(Stdio {
        stdin: child_in,
        stdout: out_w,
        stderr: err_w,
    })
}

/// A process the shim owns.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    status: &'static str,
    exit: Option<ExitRecord>,
}

impl Proc {
    fn to_pb(&self, exec_id: &str) -> pb::ProcessState {
        pb::ProcessState {
            exec_id: exec_id.to_owned(),
            pid: self.pid,
            status: self.status.to_owned(),
            exit_status: self.exit.map_or(0, |e| e.exit_status),
            exited_at: self.exit.map_or(0, |e| e.exited_at),
            ..Default::default()
        }
    }
}

struct State {
    init: Proc,
    execs: HashMap<String, Proc>,
    /// Exec helpers being waited for: pid → where their status goes.
    helpers: HashMap<u32, std::sync::mpsc::Sender<i32>>,
    /// Exits of pids not known yet (an exec process may exit before the helper's report).
    early: HashMap<u32, ExitRecord>,
    container: Executor,
}

/// The container under one of the two runtime handlers.
enum Executor {
    /// youki's libcontainer, in this process.
    Builtin(libcontainer::container::Container),
    /// An external OCI runtime binary (see [`super::runc`]).
    External(super::runc::Runc),
}

struct Shim {
    ns: String,
    id: String,
    dir: PathBuf,
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    log: Arc<Mutex<Log>>,
}

fn start(a: &ServeArgs) -> Result<(), Error> {
    let dir = a.dir.clone();
    // The shim's own log: stderr (berthd only reads stdout).
    let shim_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shim.log"))
        .map_err(io_err("open shim.log"))?;
    nix::unistd::dup2(shim_log.as_raw_fd(), 2).map_err(|e| Error::Io {
        what: "redirect stderr to shim.log".into(),
        source: e.into(),
    })?;
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::Io {
        what: "become child subreaper".into(),
        source: e.into(),
    })?;
    place_in_cgroup(&a.namespace, &a.id);
    let log = Arc::new(Mutex::new(Log::open(dir.join("log"))));
    let mut copiers = Vec::new();
    let io = stdio(&a.stdin, &a.stdout, &a.stderr, &log, &mut copiers)?;
    // The copier threads above only block on reads, FIFO opens and the log lock; the
    // executor's clone() copies no lock they hold mid-operation into the child except the
    // log's mutex, which the child never touches.
    std::fs::create_dir_all(dir.join("runtime")).map_err(io_err("create runtime/"))?;
    let (pid, container) = match &a.runtime_binary {
        Some(binary) => {
            let r = super::runc::Runc {
                binary: binary.clone(),
                dir: dir.clone(),
                id: a.id.clone(),
            };
            let pid = r.create(io.stdin, io.stdout, io.stderr)?;
            (pid, Executor::External(r))
        }
        None => builtin_create(a, &dir, io)?,
    };
    let (changed, _) = watch::channel(0u64);
    let shim = Arc::new(Shim {
        ns: a.namespace.clone(),
        id: a.id.clone(),
        dir: dir.clone(),
        state: Mutex::new(State {
            init: Proc {
                pid,
                status: "created",
                exit: None,
            },
            execs: HashMap::new(),
            helpers: HashMap::new(),
            early: HashMap::new(),
            container,
        }),
        changed,
        log,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("start the async runtime"))?;
    rt.block_on(run(shim, copiers))
}

/// Creates the container with libcontainer (it clones this process: no thread may hold a
/// lock the child needs).
fn builtin_create(a: &ServeArgs, dir: &Path, io: Stdio) -> Result<(u32, Executor), Error> {
    let container = libcontainer::container::builder::ContainerBuilder::new(
        a.id.clone(),
        libcontainer::syscall::syscall::SyscallType::default(),
    )
    .with_root_path(dir.join("runtime"))
    .map_err(|e| Error::Executor(e.to_string()))?
    .with_stdin(io.stdin)
    .with_stdout(io.stdout)
    .with_stderr(io.stderr)
    .as_init(dir)
    .with_systemd(false)
    .with_detach(true)
    .build()
    .map_err(|e| Error::Executor(crate::metadata::chain(&e)))?;
    let pid = container.pid().map_or(0, |p| p.as_raw() as u32);
    Ok((pid, Executor::Builtin(container)))
}

/// Runs `cmd` as a registered helper and returns its exit code and stderr: it is spawned
/// under the state lock and entered in the helper registry, so the reaper (which collects
/// every child of this subreaper) hands its status back instead of swallowing it. Blocking.
fn run_helper(shim: &Shim, cmd: &mut std::process::Command) -> Result<(i32, String), Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut s = shim.state.lock().expect("state lock");
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("run {:?}", cmd.get_program())))?;
    s.helpers.insert(child.id(), tx);
    drop(s);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let code = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| Error::Executor(format!("{:?} did not finish in 60 s", cmd.get_program())))?;
    Ok((code, err))
}

async fn run(shim: Arc<Shim>, copiers: Vec<std::thread::JoinHandle<()>>) -> Result<(), Error> {
    let sock = shim.dir.join("shim.sock");
    let _ = std::fs::remove_file(&sock);
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .map_err(io_err("handle SIGCHLD"))?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io_err("handle SIGTERM"))?;
    let listener = tokio::net::UnixListener::bind(&sock)
        .map_err(io_err(format!("listen on {}", sock.display())))?;
    let _ = std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    // Which file is ours: after a delete, berthd removes this directory and a new container
    // of the same id may bind a new socket at the same path while this shim still finishes.
    let ours = std::fs::symlink_metadata(&sock)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let service = Arc::new(Service {
        shim: shim.clone(),
        done: done_tx,
    });
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(listener.into())
        .register_service(shim_ttrpc::create_shim(service));
    server.start().await.map_err(|e| Error::Shim {
        id: shim.id.clone(),
        reason: format!("ttrpc server: {e}"),
    })?;
    let pid = shim.state.lock().expect("state lock").init.pid;
    let _ = std::fs::write(shim.dir.join("shim.pid"), std::process::id().to_string());
    report(&format!("ok {pid}"));
    // berthd's pipe is done with; stdout goes to the shim log like stderr.
    let _ = nix::unistd::dup2(2, 1);
    tracing::info!(id = %shim.id, pid, "container created");
    reap(&shim);
    loop {
        tokio::select! {
            _ = sigchld.recv() => reap(&shim),
            _ = sigterm.recv() => { tracing::info!("SIGTERM: the shim keeps running while its container lives"); }
            _ = done_rx.recv() => break,
        }
    }
    // Let the last answer go out.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = server.shutdown().await;
    drop(copiers);
    let still_ours = std::fs::symlink_metadata(&sock)
        .ok()
        .map(|m| (m.dev(), m.ino()))
        .is_some_and(|now| Some(now) == ours);
    if still_ours {
        let _ = std::fs::remove_file(&sock);
    }
    Ok(())
}

/// Collects every exited child: records the init's exit durably, then tells the waiters.
fn reap(shim: &Shim) {
    loop {
        let st = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(s) => s,
        };
        let Some(pid) = st.pid().map(|p| p.as_raw() as u32) else {
            continue;
        };
        let Some(code) = exit_code(st) else { continue };
        let rec = ExitRecord {
            pid,
            exit_status: code,
            exited_at: nanos_now(),
        };
        let mut s = shim.state.lock().expect("state lock");
        if let Some(tx) = s.helpers.remove(&pid) {
            let _ = tx.send(code as i32);
        } else if s.init.pid == pid {
            if let Err(e) = write_exit(&shim.dir, &rec) {
                tracing::error!("cannot record the exit status durably: {e}");
            }
            s.init.status = "stopped";
            s.init.exit = Some(rec);
            tracing::info!(pid, status = code, "container init exited");
        } else if let Some(p) = s.execs.values_mut().find(|p| p.pid == pid) {
            p.status = "stopped";
            p.exit = Some(rec);
        } else {
            s.early.insert(pid, rec);
        }
        drop(s);
        shim.changed.send_modify(|n| *n += 1);
    }
}

struct Service {
    shim: Arc<Shim>,
    done: tokio::sync::mpsc::Sender<()>,
}

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

impl Service {
    fn proc(&self, exec_id: &str) -> ttrpc::Result<Proc> {
        let s = self.shim.state.lock().expect("state lock");
        if exec_id.is_empty() {
            Ok(s.init.clone())
        } else {
            s.execs.get(exec_id).cloned().ok_or_else(|| {
                status(
                    ttrpc::Code::NOT_FOUND,
                    format!("exec {exec_id:?} of container {:?}", self.shim.id),
                )
            })
        }
    }

    /// Runs the external runtime with `args` and the container id (through the helper
    /// registry, off the async thread); a failure carries the runtime's own message.
    /// Pause (`freeze`) or resume the container: running ⇄ paused. The built-in executor
    /// works under the lock; an external runtime runs off it (the reaper needs the lock to
    /// hand the runtime's exit status back).
    async fn freeze(&self, freeze: bool) -> ttrpc::Result<pb::Empty> {
        let (verb, from, to) = if freeze {
            ("pause", "running", "paused")
        } else {
            ("resume", "paused", "running")
        };
        let external = {
            let mut s = self.shim.state.lock().expect("state lock");
            if s.init.status != from {
                return Err(status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!(
                        "container {:?} is {}, not {from}",
                        self.shim.id, s.init.status
                    ),
                ));
            }
            match &mut s.container {
                Executor::Builtin(c) => {
                    let r = if freeze { c.pause() } else { c.resume() };
                    r.map_err(|e| {
                        status(
                            ttrpc::Code::INTERNAL,
                            format!("{verb}: {}", crate::metadata::chain(&e)),
                        )
                    })?;
                    None
                }
                Executor::External(r) => Some(r.clone()),
            }
        };
        if let Some(r) = external {
            self.external(r, &[verb]).await?;
        }
        self.shim.state.lock().expect("state lock").init.status = to;
        Ok(pb::Empty::default())
    }

    async fn external(&self, r: super::runc::Runc, args: &[&str]) -> ttrpc::Result<()> {
        let shim = self.shim.clone();
        let verb = args.join(" ");
        let mut cmd = r.command(args);
        let offset = r.log_offset();
        let (code, err) = tokio::task::spawn_blocking(move || run_helper(&shim, &mut cmd))
            .await
            .map_err(|e| status(ttrpc::Code::INTERNAL, e.to_string()))?
            .map_err(|e| e.to_ttrpc())?;
        if code != 0 {
            return Err(status(
                ttrpc::Code::INTERNAL,
                format!(
                    "{} {verb}: {}",
                    r.binary.display(),
                    r.errors_since(offset, &format!("exit status {code}: {err}"))
                ),
            ));
        }
        Ok(())
    }

    /// Pids in the container's cgroup.
    fn pids(&self) -> Vec<u32> {
        let rel = super::spec::cgroup_path(&self.shim.ns, &self.shim.id);
        let rel = rel.trim_start_matches('/');
        for base in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/memory",
        ] {
            if let Ok(s) = std::fs::read_to_string(Path::new(base).join(rel).join("cgroup.procs")) {
                return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }
}

#[async_trait]
impl shim_ttrpc::Shim for Service {
    async fn state(
        &self,
        _: &TtrpcContext,
        r: pb::StateRequest,
    ) -> ttrpc::Result<pb::StateResponse> {
        let p = self.proc(&r.exec_id)?;
        let s = self.shim.state.lock().expect("state lock");
        Ok(pb::StateResponse {
            process: Some(p.to_pb(&r.exec_id)).into(),
            execs: s.execs.iter().map(|(k, v)| v.to_pb(k)).collect(),
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _: &TtrpcContext,
        _: pb::StartRequest,
    ) -> ttrpc::Result<pb::StartResponse> {
        // The built-in executor works under the lock; an external runtime runs off it (the
        // reaper needs the lock to hand the runtime's exit status back).
        let external = {
            let mut s = self.shim.state.lock().expect("state lock");
            if s.init.status != "created" {
                return Err(status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!(
                        "container {:?} is {}, not created",
                        self.shim.id, s.init.status
                    ),
                ));
            }
            match &mut s.container {
                Executor::Builtin(c) => {
                    c.start().map_err(|e| {
                        status(
                            ttrpc::Code::INTERNAL,
                            format!("start: {}", crate::metadata::chain(&e)),
                        )
                    })?;
                    None
                }
                Executor::External(r) => Some(r.clone()),
            }
        };
        if let Some(r) = external {
            self.external(r, &["start"]).await?;
        }
        let mut s = self.shim.state.lock().expect("state lock");
        if s.init.status == "created" {
            s.init.status = "running";
        }
        Ok(pb::StartResponse {
            pid: s.init.pid,
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, r: pb::KillRequest) -> ttrpc::Result<pb::Empty> {
        let sig = Signal::try_from(r.signal as i32).map_err(|_| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("signal {}", r.signal),
            )
        })?;
        let p = self.proc(&r.exec_id)?;
        if p.status == "stopped" {
            return Err(status(
                ttrpc::Code::NOT_FOUND,
                format!(
                    "process {} of container {:?} has exited",
                    p.pid, self.shim.id
                ),
            ));
        }
        let targets = if r.all { self.pids() } else { vec![p.pid] };
        for pid in targets {
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig) {
                if e != nix::errno::Errno::ESRCH {
                    return Err(status(ttrpc::Code::INTERNAL, format!("kill {pid}: {e}")));
                }
            }
        }
        Ok(pb::Empty::default())
    }

    async fn wait(&self, _: &TtrpcContext, r: pb::WaitRequest) -> ttrpc::Result<pb::WaitResponse> {
        let mut rx = self.shim.changed.subscribe();
        loop {
            let p = self.proc(&r.exec_id)?;
            if p.status == "stopped" {
                return Ok(pb::WaitResponse {
                    process: Some(p.to_pb(&r.exec_id)).into(),
                    ..Default::default()
                });
            }
            if rx.changed().await.is_err() {
                return Err(status(ttrpc::Code::UNAVAILABLE, "shim shutting down"));
            }
        }
    }

    async fn exec(&self, _: &TtrpcContext, r: pb::ExecRequest) -> ttrpc::Result<pb::ExecResponse> {
        if r.exec_id.is_empty() || r.args.is_empty() {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                "exec needs an exec id and a command",
            ));
        }
        {
            let s = self.shim.state.lock().expect("state lock");
            if s.execs.contains_key(&r.exec_id) {
                return Err(status(
                    ttrpc::Code::ALREADY_EXISTS,
                    format!("exec {:?} of container {:?}", r.exec_id, self.shim.id),
                ));
            }
            if s.init.status != "running" {
                return Err(status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!(
                        "container {:?} is {}, not running",
                        self.shim.id, s.init.status
                    ),
                ));
            }
        }
        let shim = self.shim.clone();
        tokio::task::spawn_blocking(move || spawn_exec(&shim, r))
            .await
            .map_err(|e| status(ttrpc::Code::INTERNAL, e.to_string()))?
            .map_err(|e| e.to_ttrpc())
    }

    async fn pids(&self, _: &TtrpcContext, _: pb::PidsRequest) -> ttrpc::Result<pb::PidsResponse> {
        Ok(pb::PidsResponse {
            pids: self.pids(),
            ..Default::default()
        })
    }

    async fn pause(&self, _: &TtrpcContext, _: pb::Empty) -> ttrpc::Result<pb::Empty> {
        self.freeze(true).await
    }

    async fn resume(&self, _: &TtrpcContext, _: pb::Empty) -> ttrpc::Result<pb::Empty> {
        self.freeze(false).await
    }

    async fn delete(
        &self,
        _: &TtrpcContext,
        _: pb::DeleteRequest,
    ) -> ttrpc::Result<pb::DeleteResponse> {
        let external = {
            let mut s = self.shim.state.lock().expect("state lock");
            if s.init.status == "running" || s.init.status == "paused" {
                return Err(status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!(
                        "container {:?} is {}: kill it first",
                        self.shim.id, s.init.status
                    ),
                ));
            }
            if s.init.status == "created" {
                // Never started: end the waiting init.
                let _ = nix::sys::signal::kill(Pid::from_raw(s.init.pid as i32), Signal::SIGKILL);
            }
            match &mut s.container {
                Executor::Builtin(c) => {
                    if let Err(e) = c.delete(true) {
                        tracing::warn!("executor delete: {}", crate::metadata::chain(&e));
                    }
                    None
                }
                Executor::External(r) => Some(r.clone()),
            }
        };
        if let Some(r) = external {
            if let Err(e) = self.external(r, &["delete", "--force"]).await {
                tracing::warn!("runtime delete: {e}");
            }
        }
        remove_cgroups(&self.shim.ns, &self.shim.id);
        let p = self.shim.state.lock().expect("state lock").init.to_pb("");
        let _ = self.done.try_send(());
        Ok(pb::DeleteResponse {
            process: Some(p).into(),
            ..Default::default()
        })
    }
}

/// Runs the exec helper and records the new process.
fn spawn_exec(shim: &Arc<Shim>, r: pb::ExecRequest) -> Result<pb::ExecResponse, Error> {
    let mut copiers = Vec::new();
    let io = stdio(&r.stdin, &r.stdout, &r.stderr, &shim.log, &mut copiers)?;
    let external = match &shim.state.lock().expect("state lock").container {
        Executor::External(x) => Some(x.clone()),
        Executor::Builtin(_) => None,
    };
    if let Some(x) = external {
        let pid = exec_external(shim, &x, &r, io)?;
        return Ok(register_exec(shim, &r.exec_id, pid));
    }
    let process = serde_json::json!({"args": r.args, "env": r.env, "cwd": r.cwd});
    let (out_r, out_w) = pipe()?;
    let (tx, rx) = std::sync::mpsc::channel();
    // The reaper may see the helper's exit before we register it: hold the state lock over
    // the spawn so the registration comes first.
    let mut s = shim.state.lock().expect("state lock");
    let child = std::process::Command::new("/proc/self/exe")
        .arg0(super::SHIM_ARGV0)
        .arg("exec")
        .arg("--id")
        .arg(&shim.id)
        .arg("--root")
        .arg(shim.dir.join("runtime"))
        .arg("--process")
        .arg(process.to_string())
        .arg("--spec")
        .arg(shim.dir.join("config.json"))
        .stdin(std::process::Stdio::from(io.stdin))
        .stdout(std::process::Stdio::from(out_w))
        .stderr(std::process::Stdio::from(
            io.stderr.try_clone().map_err(io_err("dup"))?,
        ))
        .spawn_with_stdout_fd(io.stdout)
        .map_err(io_err("start the exec helper"))?;
    s.helpers.insert(child, tx);
    drop(s);
    let mut line = String::new();
    let _ = File::from(out_r).read_to_string(&mut line);
    let code = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| Error::Executor("the exec helper did not finish in 60 s".into()))?;
    let line = line.trim();
    let pid: u32 = match line.parse() {
        Ok(p) if code == 0 => p,
        _ => {
            return Err(Error::Executor(
                line.strip_prefix("error: ").unwrap_or(line).to_owned(),
            ))
        }
    };
    Ok(register_exec(shim, &r.exec_id, pid))
}

/// Records a started exec process (or its exit, when the reaper saw it first).
fn register_exec(shim: &Shim, exec_id: &str, pid: u32) -> pb::ExecResponse {
    let mut s = shim.state.lock().expect("state lock");
    let mut p = Proc {
        pid,
        status: "running",
        exit: None,
    };
    if let Some(rec) = s.early.remove(&pid) {
        p.status = "stopped";
        p.exit = Some(rec);
    }
    s.execs.insert(exec_id.to_owned(), p);
    drop(s);
    shim.changed.send_modify(|n| *n += 1);
    pb::ExecResponse {
        pid,
        ..Default::default()
    }
}

/// `runc exec --detach` with the process's stdio; returns its pid.
fn exec_external(
    shim: &Shim,
    x: &super::runc::Runc,
    r: &pb::ExecRequest,
    io: Stdio,
) -> Result<u32, Error> {
    let spec = super::spec::parse(
        &std::fs::read(shim.dir.join("config.json")).map_err(io_err("read config.json"))?,
    )?;
    let process = super::runc::exec_process(&spec, &r.args, &r.env, &r.cwd)?;
    // The exec id is a validated identifier (berthctl generates one); keep the file names
    // safe anyway.
    let tag: String = r
        .exec_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let process_path = shim.dir.join(format!("exec-{tag}.json"));
    let pid_path = shim.dir.join(format!("exec-{tag}.pid"));
    std::fs::write(&process_path, process.to_string())
        .map_err(io_err(format!("write {}", process_path.display())))?;
    let offset = x.log_offset();
    let mut cmd = x.exec_command(&process_path, &pid_path);
    cmd.stdin(std::process::Stdio::from(io.stdin))
        .stdout(std::process::Stdio::from(io.stdout))
        .stderr(std::process::Stdio::from(io.stderr));
    let result = run_helper(shim, &mut cmd);
    drop(cmd);
    let _ = std::fs::remove_file(&process_path);
    let (code, _) = result?;
    let pid = if code == 0 {
        super::runc::read_pid(&pid_path)
    } else {
        Err(Error::Executor(format!(
            "{} exec: {}",
            x.binary.display(),
            x.errors_since(offset, &format!("exit status {code}"))
        )))
    };
    let _ = std::fs::remove_file(&pid_path);
    pid
}

/// Spawning the helper with the process's stdout on fd 3 (the helper's own stdout is the
/// pid report).
trait SpawnWithFd {
    fn spawn_with_stdout_fd(&mut self, fd: OwnedFd) -> std::io::Result<u32>;
}

impl SpawnWithFd for std::process::Command {
    fn spawn_with_stdout_fd(&mut self, fd: OwnedFd) -> std::io::Result<u32> {
        let raw = fd.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls dup2, which
        // is async-signal-safe; `fd` stays open in the parent until spawn returns.
        unsafe {
            self.pre_exec(move || {
                if raw == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.spawn()?;
        drop(fd);
        Ok(child.id())
    }
}

/// The exec helper: joins the container with libcontainer's tenant builder. Its stdin and
/// stderr are the process's, fd 3 the process's stdout.
fn exec_helper(a: &ExecArgs) -> Result<u32, Error> {
    #[derive(serde::Deserialize)]
    struct P {
        args: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        cwd: String,
    }
    let p: P = serde_json::from_str(&a.process)
        .map_err(|e| Error::InvalidSpec(format!("exec process: {e}")))?;
    let env: HashMap<String, String> = p
        .env
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let dup = |fd: i32| -> Result<OwnedFd, Error> {
        let n = nix::unistd::dup(fd).map_err(|e| Error::Io {
            what: format!("dup fd {fd}"),
            source: e.into(),
        })?;
        // SAFETY: dup returned a new descriptor owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    };
    let spec = super::spec::parse(
        &std::fs::read(&a.spec).map_err(io_err(format!("read {}", a.spec.display())))?,
    )?;
    let user = spec.process().as_ref().map(|p| p.user().clone());
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let pid = libcontainer::container::builder::ContainerBuilder::new(
        a.id.clone(),
        libcontainer::syscall::syscall::SyscallType::default(),
    )
    .with_executor(SeccompExecutor { seccomp })
    .with_root_path(&a.root)
    .map_err(|e| Error::Executor(e.to_string()))?
    .with_stdin(dup(0)?)
    .with_stdout(dup(3)?)
    .with_stderr(dup(2)?)
    .as_tenant()
    .with_container_args(p.args)
    .with_env(env)
    .with_cwd((!p.cwd.is_empty()).then_some(PathBuf::from(p.cwd)))
    .with_user(user.as_ref().map(|u| u.uid()))
    .with_group(user.as_ref().map(|u| u.gid()))
    .with_additional_gids(
        user.as_ref()
            .and_then(|u| u.additional_gids().clone())
            .unwrap_or_default(),
    )
    .with_detach(true)
    .build()
    .map_err(|e| Error::Executor(crate::metadata::chain(&e)))?;
    Ok(pid.as_raw() as u32)
}

/// Hand-written around libcontainer 0.7: its tenant (exec) builder rebuilds the spec's
/// `linux` section with namespaces and cgroup only, so an exec'd process would run without
/// the container's seccomp profile (runc applies it). This executor installs the profile as
/// the last step before the exec — after the user switch, with no_new_privs set — and then
/// runs the default executor.
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl libcontainer::workload::Executor for SeccompExecutor {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        if let Some(s) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(s).map_err(|e| {
                libcontainer::workload::ExecutorError::Other(format!("seccomp: {e}"))
            })?;
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(d.path()), None);
        let rec = ExitRecord {
            pid: 42,
            exit_status: 137,
            exited_at: 1,
        };
        write_exit(d.path(), &rec).unwrap();
        assert_eq!(read_exit(d.path()), Some(rec));
        assert!(!d.path().join("exit.tmp").exists());
    }

    #[test]
    fn the_container_log_rotates_at_its_cap() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path().join("log"));
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(LOG_CAP / chunk.len() as u64) {
            log.write(&chunk);
        }
        assert_eq!(
            std::fs::metadata(d.path().join("log")).unwrap().len(),
            LOG_CAP
        );
        log.write(b"next\n");
        assert_eq!(std::fs::read(d.path().join("log")).unwrap(), b"next\n");
        assert_eq!(
            std::fs::metadata(d.path().join("log.1")).unwrap().len(),
            LOG_CAP
        );
    }
}
