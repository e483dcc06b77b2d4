//! Process handling: how a service's process is started (clean environment, empty signal
//! mask, its own process group, joining its cgroup before exec), how its output reaches the
//! console, how readiness is checked, and how signals reach a run.
//!
//! Each function starts at most one helper thread, which reports back to the main loop with
//! an [`Event`]; nothing here decides what to do about an exit (that is
//! [`policy`](super::policy) and the [`Supervisor`](super::Supervisor)).

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::control::Event;
use super::spec::{Readiness, ServiceSpec};
use crate::console::Console;
use crate::events;
use crate::output::{self, LastLines, Stream};

/// `PATH` services start with.
const SERVICE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a readiness check gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyError {
    /// No answer within the timeout; the last client error.
    Timeout(Duration, String),
    /// The client code panicked (reported once; the service keeps running).
    Panicked,
}

/// The command that starts `spec`: a clean environment, `/` as working directory, stdin
/// from /dev/null, stdout and stderr piped, its own process group. With `procs_fd` (the
/// service cgroup's `cgroup.procs`, open in the parent) the child joins the cgroup itself
/// before exec; the fd must stay open until the command is spawned.
pub(super) fn command(spec: &ServiceSpec, procs_fd: Option<RawFd>) -> Command {
    let mut command = Command::new(&spec.path);
    command
        .args(&spec.args)
        .env_clear()
        .env("PATH", SERVICE_PATH)
        .env("HOME", "/root")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The child joins its cgroup itself, before exec, by writing "0" (itself) to the
    // cgroup.procs the parent opened: nothing the service runs or forks can start outside
    // its cgroup, and nothing allocates after fork. (clone3's CLONE_INTO_CGROUP would do
    // the same in the kernel, but std's Command cannot use it, and a raw clone3 in a
    // multi-threaded process is much harder to get right.)
    let procs_fd = procs_fd.unwrap_or(-1);
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (sigemptyset, pthread_sigmask, write) on a local set and
    // on `procs_fd`, which the caller keeps open in the parent until the spawn returns.
    unsafe {
        command.pre_exec(move || {
            // std does not reset the mask: the child would inherit init's blocked
            // SIGTERM/SIGINT/SIGCHLD and never see them.
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
            if procs_fd >= 0 && libc::write(procs_fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Forwards the run's stdout and stderr to the console, one thread per pipe, each sending
/// [`Event::OutputClosed`] at end of stream. Returns how many pipes are forwarded.
pub(super) fn forward_output(
    child: &mut Child,
    service: usize,
    name: &str,
    last: &Arc<Mutex<LastLines>>,
    console: Console,
    events: &events::Sender<Event>,
) -> u8 {
    let pid = child.id() as i32;
    let mut open_pipes = 0;
    let pipes: [(Option<Box<dyn std::io::Read + Send>>, Stream); 2] = [
        (
            child.stdout.take().map(|p| Box::new(p) as _),
            Stream::Stdout,
        ),
        (
            child.stderr.take().map(|p| Box::new(p) as _),
            Stream::Stderr,
        ),
    ];
    for (pipe, stream) in pipes {
        let Some(pipe) = pipe else { continue };
        let name = name.to_string();
        let last = Arc::clone(last);
        let events = events.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-out"))
            .spawn(move || {
                output::forward(pipe, &name, stream, console, &last);
                events.send(Event::OutputClosed { service, pid });
            });
        if spawned.is_ok() {
            open_pipes += 1;
        }
    }
    open_pipes
}

/// Starts the readiness check of run `pid`: [`Readiness::Version`] polls on a thread that
/// sends [`Event::Ready`]; [`Readiness::Running`] is ready at once. Returns whether the run
/// is ready already.
pub(super) fn watch_readiness(
    readiness: &Readiness,
    service: usize,
    pid: Pid,
    current: &Arc<AtomicI32>,
    events: &events::Sender<Event>,
) -> bool {
    match readiness {
        Readiness::Running => true,
        Readiness::Version { address, timeout } => {
            let (address, timeout, current, events) = (
                address.clone(),
                *timeout,
                Arc::clone(current),
                events.clone(),
            );
            let _ = std::thread::Builder::new()
                .name("readiness".into())
                .spawn(move || {
                    if let Some(result) = wait_ready(&address, timeout, pid.as_raw(), &current) {
                        events.send(Event::Ready {
                            service,
                            pid: pid.as_raw(),
                            result,
                        });
                    }
                });
            false
        }
    }
}

/// Signals a service's whole process group (and the process itself, should it have left
/// the group).
pub fn kill_run(pid: Pid, signal: Signal) {
    let _ = kill(Pid::from_raw(-pid.as_raw()), signal);
    let _ = kill(pid, signal);
}

/// Polls berthd's Version until it answers, `timeout` passes, or the run `pid` is no longer
/// current (returns `None` then: nobody cares any more).
fn wait_ready(
    address: &str,
    timeout: Duration,
    pid: i32,
    current: &AtomicI32,
) -> Option<Result<String, ReadyError>> {
    let deadline = Instant::now() + timeout;
    let socket = address.strip_prefix("unix://").unwrap_or(address);
    let is_path = !address.contains("://") || address.starts_with("unix://");
    let mut last_error = String::from("socket not created");
    loop {
        if current.load(Ordering::SeqCst) != pid {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(Err(ReadyError::Timeout(timeout, last_error)));
        }
        if !is_path || std::path::Path::new(socket).exists() {
            let call = std::panic::catch_unwind(|| {
                berth_api::client::version_blocking(address, Duration::from_secs(2))
            });
            match call {
                Ok(Ok((version, _revision))) => return Some(Ok(version)),
                Ok(Err(err)) => last_error = err.to_string(),
                Err(_) => return Some(Err(ReadyError::Panicked)),
            }
        }
        // Short: readiness is the boot's finish line, and a connect attempt is cheap.
        std::thread::sleep(Duration::from_millis(20));
    }
}
