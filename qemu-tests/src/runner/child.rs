//! One test process: started in a process group of its own (so a hang guard or an interrupt
//! ends it together with its QEMU and helpers), output into a log file, reaped with its CPU
//! time (`wait4(2)`'s rusage: the test and every child it waited for, QEMU included).

use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

/// A started test process.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    started: Instant,
}

/// How a test process ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// Its exit status.
    pub status: ExitStatus,
    /// Wall time.
    pub wall: Duration,
    /// User plus system CPU time of the process and the children it waited for.
    pub cpu: Duration,
}

impl Child {
    /// Starts `command` in a new process group, stdin closed, stdout and stderr into `log`.
    pub fn spawn(mut command: Command, log: &Path) -> std::io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()?;
        // Reaped with wait4 below, never through std's Child (dropping it does not wait).
        let pid = Pid::from_raw(child.id() as i32);
        Ok(Self {
            pid,
            started: Instant::now(),
        })
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Reaps the process if it has ended.
    pub fn try_end(&self) -> std::io::Result<Option<Ended>> {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `usage` are valid, writable and live for the call; the pid is
        // our own unreaped child, so no other process's status is consumed.
        let rc = unsafe { libc::wait4(self.pid.as_raw(), &mut status, libc::WNOHANG, &mut usage) };
        match rc {
            0 => Ok(None),
            rc if rc == self.pid.as_raw() => {
                let tv = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
                };
                Ok(Some(Ended {
                    status: ExitStatus::from_raw(status),
                    wall: self.started.elapsed(),
                    cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
                }))
            }
            _ => Err(std::io::Error::last_os_error()),
        }
    }

    /// SIGKILLs the whole process group (the test, its QEMU, its helpers).
    pub fn kill_group(&self) {
        let _ = signal::killpg(self.pid, Signal::SIGKILL);
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Notes SIGINT, SIGTERM and SIGHUP instead of dying, so the runner can end the test process
/// groups (which the terminal's Ctrl-C no longer reaches) before it exits.
pub fn catch_interrupts() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let _ = unsafe { signal::sigaction(sig, &action) };
    }
}

/// Whether an interrupt arrived since [`catch_interrupts`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
