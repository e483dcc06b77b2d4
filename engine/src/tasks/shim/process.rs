//! The shim's state machine: the container's init and exec'd processes, their states and
//! exits, and the operations the shim API offers on them (state, start, kill, wait, exec,
//! pids, pause/resume, delete) as core calls. The ttrpc adapter in `berth-daemon` maps the
//! shim API onto these.
//!
//! The shim is the child subreaper: [`Shim::reap`] collects every exited child, records the
//! init's exit durably ([`super::exits`]) before any waiter is told, and hands the exit codes
//! of helper processes (exec helpers, external runtime calls) back to whoever runs them.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::watch;

use super::args::ServeArgs;
use super::executor::{builtin_create, place_in_cgroup, remove_cgroups, Executor};
use super::exits::{write_exit, ExitRecord};
use super::io::{io_err, ChildStdio, Log, ProcIo};
use super::output::Subscription;
use crate::tasks::{exit_code, Error, ExecProcess, ProcessState, Status};

/// The console socket of the init's terminal, in the shim's directory.
const INIT_CONSOLE: &str = "tty.sock";

/// A process the shim owns.
#[derive(Clone)]
pub(super) struct Proc {
    /// 0 for an exec not started yet.
    pub(super) pid: u32,
    pub(super) status: Status,
    pub(super) exit: Option<ExitRecord>,
    pub(super) io: Arc<ProcIo>,
    /// An exec created and not started yet: what `start` runs.
    pub(super) pending: Option<ExecProcess>,
}

impl Proc {
    fn state(&self) -> ProcessState {
        ProcessState {
            pid: self.pid,
            status: self.status,
            exit_status: self.exit.map_or(0, |e| e.exit_status),
            exited_at: self.exit.map_or(0, |e| e.exited_at),
            oom_killed: self.exit.is_some_and(|e| e.oom_kills > 0),
        }
    }
}

pub(super) struct State {
    pub(super) init: Proc,
    pub(super) execs: HashMap<String, Proc>,
    /// Exec helpers being waited for: pid → where their status goes.
    pub(super) helpers: HashMap<u32, std::sync::mpsc::Sender<i32>>,
    /// Exits of pids not known yet (an exec process may exit before the helper's report).
    pub(super) early: HashMap<u32, ExitRecord>,
    pub(super) container: Executor,
}

/// One container's shim: its processes, its log and its directory.
pub struct Shim {
    pub(super) ns: String,
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<State>,
    /// Bumped on every process change; waiters watch it.
    pub(super) changed: watch::Sender<u64>,
    pub(super) log: Arc<Mutex<Log>>,
    /// The init's output in CRI's format, when berthd gave a log path.
    pub(super) cri_log: Option<Arc<super::cri_log::CriLog>>,
}

/// Output copier threads of the init, kept until the shim exits.
pub type Copiers = Vec<std::thread::JoinHandle<()>>;

/// A client attached to a process's stdio ([`Shim::attach`]): its output from now on, then
/// its exit; and the process's stdio for the client's input and window size.
pub struct Attachment {
    /// 0 for an exec not started yet.
    pub pid: u32,
    pub io: Arc<ProcIo>,
    pub output: Subscription,
}

fn nanos_now() -> i64 {
    berth_api::time::nanos(SystemTime::now())
}

/// Sets up the shim process (its own log on stderr, child subreaper, its cgroup) and creates
/// the container of `a` with its stdio. Must run before any other thread than the output
/// copiers exists: libcontainer clones the calling process.
pub(super) fn create(a: &ServeArgs) -> Result<(Arc<Shim>, Copiers), Error> {
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
    let cri_log = match &a.cri_log {
        Some(p) => Some(Arc::new(
            super::cri_log::CriLog::open(p)
                .map_err(io_err(format!("open the CRI log {}", p.display())))?,
        )),
        None => None,
    };
    let mut copiers = Vec::new();
    // A terminal is the spec's (berthd sets process.terminal for `Tasks.Create` with one).
    let spec = crate::tasks::spec::parse(
        &std::fs::read(dir.join("config.json")).map_err(io_err("read config.json"))?,
    )?;
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    let io = ProcIo::new(a.stdin, terminal, cri_log.clone())?;
    let ChildStdio {
        stdin,
        stdout,
        stderr,
        console,
    } = io.prepare(&dir, INIT_CONSOLE, &log, &mut copiers)?;
    // The copier threads above only block on reads, polls and the log lock; the executor's
    // clone() copies no lock they hold mid-operation into the child except the log's and
    // the output hub's mutexes, which the child never touches.
    std::fs::create_dir_all(dir.join("runtime")).map_err(io_err("create runtime/"))?;
    let console_path = console.as_ref().map(|c| c.path().to_owned());
    let (pid, container) = match &a.runtime_binary {
        Some(binary) => {
            let r = crate::tasks::runc::Runc {
                binary: binary.clone(),
                dir: dir.clone(),
                id: a.id.clone(),
            };
            let pid = r.create(stdin, stdout, stderr, console_path.as_deref())?;
            (pid, Executor::External(r))
        }
        None => builtin_create(a, &dir, [stdin, stdout, stderr], console_path.as_deref())?,
    };
    if let Some(c) = console {
        io.set_master(c.receive()?, &log, &mut copiers)?;
    }
    let (changed, _) = watch::channel(0u64);
    let shim = Arc::new(Shim {
        ns: a.namespace.clone(),
        id: a.id.clone(),
        dir,
        state: Mutex::new(State {
            init: Proc {
                pid,
                status: Status::Created,
                exit: None,
                io,
                pending: None,
            },
            execs: HashMap::new(),
            helpers: HashMap::new(),
            early: HashMap::new(),
            container,
        }),
        changed,
        log,
        cri_log,
    });
    Ok((shim, copiers))
}

/// Runs `cmd` as a registered helper and returns its exit code and stderr: it is spawned
/// under the state lock and entered in the helper registry, so the reaper (which collects
/// every child of this subreaper) hands its status back instead of swallowing it. Blocking.
pub(super) fn run_helper(
    shim: &Shim,
    cmd: &mut std::process::Command,
) -> Result<(i32, String), Error> {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut s = shim.state.lock().expect("state lock");
    let mut child = cmd
        .spawn()
        .map_err(io_err(format!("run {:?}", cmd.get_program())))?;
    s.helpers.insert(child.id(), tx);
    drop(s);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    let code = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| Error::Executor(format!("{:?} did not finish in 60 s", cmd.get_program())))?;
    Ok((code, err))
}

impl Shim {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The shim's directory (bundle, socket, logs, exit record).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The init's pid.
    pub fn init_pid(&self) -> u32 {
        self.state.lock().expect("state lock").init.pid
    }

    /// Collects every exited child: records the init's exit durably, then tells the waiters.
    pub fn reap(&self) {
        loop {
            let st = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => s,
            };
            let Some(pid) = st.pid().map(|p| p.as_raw() as u32) else {
                continue;
            };
            let Some(code) = exit_code(st) else { continue };
            let mut rec = ExitRecord {
                pid,
                exit_status: code,
                exited_at: nanos_now(),
                oom_kills: 0,
            };
            let mut s = self.state.lock().expect("state lock");
            if let Some(tx) = s.helpers.remove(&pid) {
                let _ = tx.send(code as i32);
            } else if s.init.pid == pid {
                // Read now, while the cgroup exists: the record says whether the OOM killer
                // was part of this end (crate::tasks::oom).
                let cgroup = crate::tasks::cgroups::of_bundle(&self.dir, &self.ns, &self.id);
                rec.oom_kills = crate::tasks::oom::container_oom_kills(&cgroup).unwrap_or(0);
                if let Err(e) = write_exit(&self.dir, &rec) {
                    tracing::error!("cannot record the exit status durably: {e}");
                }
                s.init.status = Status::Stopped;
                s.init.exit = Some(rec);
                s.init.io.output.set_exit(rec);
                tracing::info!(pid, status = code, "container init exited");
            } else if let Some(p) = s.execs.values_mut().find(|p| p.pid == pid) {
                p.status = Status::Stopped;
                p.exit = Some(rec);
                p.io.output.set_exit(rec);
            } else {
                s.early.insert(pid, rec);
            }
            drop(s);
            self.changed.send_modify(|n| *n += 1);
        }
    }

    fn proc(&self, exec_id: &str) -> Result<Proc, Error> {
        let s = self.state.lock().expect("state lock");
        if exec_id.is_empty() {
            Ok(s.init.clone())
        } else {
            s.execs.get(exec_id).cloned().ok_or_else(|| {
                Error::NotFound(format!("exec {exec_id:?} of container {:?}", self.id))
            })
        }
    }

    /// How messages name process `exec_id`.
    fn what(&self, exec_id: &str) -> String {
        if exec_id.is_empty() {
            format!("container {:?}", self.id)
        } else {
            format!("exec {exec_id:?} of container {:?}", self.id)
        }
    }

    /// Attaches a client to the stdio of process `exec_id` (`""`: the init): its output from
    /// now on and then its exit, and its stdin (`stdin`) or terminal (`tty`) — each refused
    /// when the process was created without one.
    pub fn attach(&self, exec_id: &str, stdin: bool, tty: bool) -> Result<Attachment, Error> {
        let p = self.proc(exec_id)?;
        if tty && !p.io.terminal {
            return Err(Error::FailedPrecondition(format!(
                "{} has no terminal: it was created without one (-t)",
                self.what(exec_id)
            )));
        }
        if stdin && !p.io.stdin_open {
            return Err(Error::FailedPrecondition(format!(
                "{} has no stdin: it was created without -i (its stdin is /dev/null)",
                self.what(exec_id)
            )));
        }
        Ok(Attachment {
            pid: p.pid,
            output: p.io.output.subscribe(),
            io: p.io,
        })
    }

    /// Process `exec_id` (`""`: the init), and every exec'd process by exec id.
    pub fn state(
        &self,
        exec_id: &str,
    ) -> Result<(ProcessState, Vec<(String, ProcessState)>), Error> {
        let p = self.proc(exec_id)?;
        let s = self.state.lock().expect("state lock");
        let execs = s
            .execs
            .iter()
            .map(|(k, v)| (k.clone(), v.state()))
            .collect();
        Ok((p.state(), execs))
    }

    /// Runs the external runtime with `args` and the container id (through the helper
    /// registry, off the async thread); a failure carries the runtime's own message.
    async fn external(
        self: &Arc<Self>,
        r: crate::tasks::runc::Runc,
        args: &[&str],
    ) -> Result<(), Error> {
        let shim = self.clone();
        let verb = args.join(" ");
        let mut cmd = r.command(args);
        let offset = r.log_offset();
        let (code, err) = tokio::task::spawn_blocking(move || run_helper(&shim, &mut cmd))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if code != 0 {
            return Err(Error::Internal(format!(
                "{} {verb}: {}",
                r.binary.display(),
                r.errors_since(offset, &format!("exit status {code}: {err}"))
            )));
        }
        Ok(())
    }

    /// Starts the created process `exec_id` (`""`: the init); returns its pid.
    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32, Error> {
        if exec_id.is_empty() {
            self.start_init().await
        } else {
            self.start_exec(exec_id).await
        }
    }

    /// Starts the created init; returns its pid. The built-in executor works under the
    /// lock; an external runtime runs off it (the reaper needs the lock to hand the runtime's
    /// exit status back).
    async fn start_init(self: &Arc<Self>) -> Result<u32, Error> {
        let external = {
            let mut s = self.state.lock().expect("state lock");
            if s.init.status != Status::Created {
                return Err(Error::FailedPrecondition(format!(
                    "container {:?} is {}, not created",
                    self.id, s.init.status
                )));
            }
            match &mut s.container {
                Executor::Builtin(c) => {
                    c.start().map_err(|e| {
                        Error::Internal(format!("start: {}", berth_api::errdefs::chain(&e)))
                    })?;
                    None
                }
                Executor::External(r) => Some(r.clone()),
            }
        };
        if let Some(r) = external {
            self.external(r, &["start"]).await?;
        }
        let mut s = self.state.lock().expect("state lock");
        if s.init.status == Status::Created {
            s.init.status = Status::Running;
        }
        Ok(s.init.pid)
    }

    /// Pauses (`freeze`) or resumes the container: running ⇄ paused.
    pub async fn freeze(self: &Arc<Self>, freeze: bool) -> Result<(), Error> {
        let (verb, from, to) = if freeze {
            ("pause", Status::Running, Status::Paused)
        } else {
            ("resume", Status::Paused, Status::Running)
        };
        let external = {
            let mut s = self.state.lock().expect("state lock");
            if s.init.status != from {
                return Err(Error::FailedPrecondition(format!(
                    "container {:?} is {}, not {from}",
                    self.id, s.init.status
                )));
            }
            match &mut s.container {
                Executor::Builtin(c) => {
                    let r = if freeze { c.pause() } else { c.resume() };
                    r.map_err(|e| {
                        Error::Internal(format!("{verb}: {}", berth_api::errdefs::chain(&e)))
                    })?;
                    None
                }
                Executor::External(r) => Some(r.clone()),
            }
        };
        if let Some(r) = external {
            self.external(r, &[verb]).await?;
        }
        self.state.lock().expect("state lock").init.status = to;
        Ok(())
    }

    /// Sends signal number `signal` to process `exec_id` (`""`: the init), or to every
    /// process in the container's cgroup (`all`).
    pub fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<(), Error> {
        let sig = Signal::try_from(signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("signal {signal}")))?;
        let p = self.proc(exec_id)?;
        if p.pid == 0 {
            return Err(Error::FailedPrecondition(format!(
                "{} is created, not started",
                self.what(exec_id)
            )));
        }
        if p.status == Status::Stopped {
            return Err(Error::NotFound(format!(
                "process {} of container {:?} has exited",
                p.pid, self.id
            )));
        }
        let targets = if all { self.pids() } else { vec![p.pid] };
        for pid in targets {
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(pid as i32), sig) {
                if e != nix::errno::Errno::ESRCH {
                    return Err(Error::Internal(format!("kill {pid}: {e}")));
                }
            }
        }
        Ok(())
    }

    /// Waits until process `exec_id` (`""`: the init) has exited.
    pub async fn wait(&self, exec_id: &str) -> Result<ProcessState, Error> {
        let mut rx = self.changed.subscribe();
        loop {
            let p = self.proc(exec_id)?;
            if p.status == Status::Stopped {
                return Ok(p.state());
            }
            if rx.changed().await.is_err() {
                return Err(Error::Unavailable("shim shutting down".into()));
            }
        }
    }

    /// Creates process `p` in the running container, with its stdio, not started yet
    /// (containerd's Exec): [`Shim::start`] with its exec id runs it, so clients can attach
    /// first. Returns 0 (its pid comes with the start).
    pub async fn exec(self: &Arc<Self>, p: ExecProcess) -> Result<u32, Error> {
        if p.exec_id.is_empty() || p.args.is_empty() {
            return Err(Error::InvalidArgument(
                "exec needs an exec id and a command".into(),
            ));
        }
        let io = ProcIo::new(p.io.stdin, p.io.terminal, None)?;
        let mut s = self.state.lock().expect("state lock");
        if s.execs.contains_key(&p.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {:?} of container {:?}",
                p.exec_id, self.id
            )));
        }
        if s.init.status != Status::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {:?} is {}, not running",
                self.id, s.init.status
            )));
        }
        s.execs.insert(
            p.exec_id.clone(),
            Proc {
                pid: 0,
                status: Status::Created,
                exit: None,
                io,
                pending: Some(p),
            },
        );
        drop(s);
        self.changed.send_modify(|n| *n += 1);
        Ok(0)
    }

    /// Starts the created exec `exec_id`; returns its pid. A start that fails ends the
    /// exec (status 255, so attached clients see it end) and frees its id.
    async fn start_exec(self: &Arc<Self>, exec_id: &str) -> Result<u32, Error> {
        let (p, io) = {
            let mut s = self.state.lock().expect("state lock");
            if s.init.status != Status::Running {
                return Err(Error::FailedPrecondition(format!(
                    "container {:?} is {}, not running",
                    self.id, s.init.status
                )));
            }
            let what = self.what(exec_id);
            let proc = s
                .execs
                .get_mut(exec_id)
                .ok_or_else(|| Error::NotFound(what.clone()))?;
            let Some(p) = proc.pending.take() else {
                return Err(Error::FailedPrecondition(format!(
                    "{what} is {}, not created",
                    proc.status
                )));
            };
            (p, proc.io.clone())
        };
        let shim = self.clone();
        let io2 = io.clone();
        let r = tokio::task::spawn_blocking(move || super::exec::spawn_exec(&shim, p, io2))
            .await
            .map_err(|e| Error::Internal(e.to_string()))
            .and_then(|r| r);
        if r.is_err() {
            self.state.lock().expect("state lock").execs.remove(exec_id);
            io.output.abort(ExitRecord {
                pid: 0,
                exit_status: 255,
                exited_at: nanos_now(),
                oom_kills: 0,
            });
            self.changed.send_modify(|n| *n += 1);
        }
        r
    }

    /// Pids in the container's cgroup.
    pub fn pids(&self) -> Vec<u32> {
        let rel = crate::tasks::cgroups::of_bundle(&self.dir, &self.ns, &self.id);
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

    /// Opens the CRI log's path again (kubelet rotated the file by renaming it); a task
    /// without a CRI log has nothing to reopen.
    pub fn reopen_log(&self) -> Result<(), Error> {
        match &self.cri_log {
            Some(l) => l
                .reopen()
                .map_err(io_err(format!("reopen the CRI log {}", l.path().display()))),
            None => Err(Error::FailedPrecondition(format!(
                "container {:?} has no CRI log (its task was created without a log path)",
                self.id
            ))),
        }
    }

    /// Ends a container the shim cannot serve (its socket or server failed after the
    /// executor created it): SIGKILLs the init, reaps it, deletes the executor's state and
    /// the cgroups. Blocking; the shim exits after it.
    pub fn abort(&self) {
        let pid = self.init_pid();
        let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid as i32), None);
        if let Executor::Builtin(c) = &mut self.state.lock().expect("state lock").container {
            let _ = c.delete(true);
        }
        let cgroup = crate::tasks::cgroups::of_bundle(&self.dir, &self.ns, &self.id);
        crate::tasks::cgroups::kill_all(&cgroup);
        remove_cgroups(&self.ns, &self.id, &cgroup);
    }

    /// Deletes the container (refused while it runs) and its cgroups; returns the init's
    /// final state. The shim exits after answering.
    pub async fn delete(self: &Arc<Self>) -> Result<ProcessState, Error> {
        let external = {
            let mut s = self.state.lock().expect("state lock");
            if s.init.status == Status::Running || s.init.status == Status::Paused {
                return Err(Error::FailedPrecondition(format!(
                    "container {:?} is {}: kill it first",
                    self.id, s.init.status
                )));
            }
            if s.init.status == Status::Created {
                // Never started: end the waiting init.
                let _ = nix::sys::signal::kill(Pid::from_raw(s.init.pid as i32), Signal::SIGKILL);
            }
            match &mut s.container {
                Executor::Builtin(c) => {
                    if let Err(e) = c.delete(true) {
                        tracing::warn!("executor delete: {}", berth_api::errdefs::chain(&e));
                    }
                    None
                }
                Executor::External(r) => Some(r.clone()),
            }
        };
        if let Some(r) = external {
            if let Err(e) = self.external(r, &["delete", "--force"]).await {
                tracing::warn!("runtime delete: {}", berth_api::errdefs::chain(&e));
            }
        }
        remove_cgroups(
            &self.ns,
            &self.id,
            &crate::tasks::cgroups::of_bundle(&self.dir, &self.ns, &self.id),
        );
        Ok(self.state.lock().expect("state lock").init.state())
    }
}
