//! Signals and child reaping for PID 1.
//!
//! Init blocks the signals it cares about in every thread (threads inherit the mask; children
//! get a clean mask from `std::process::Command`) and reads them from a `signalfd`, so the
//! main loop handles them synchronously. Blocked signals are queued even for PID 1, which
//! otherwise ignores signals it has no handler for. Orphans re-parented to init are reaped
//! with `waitpid(-1, WNOHANG)` until nothing is left.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Errors setting up signal handling.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Blocking the signals failed.
    #[error("cannot block signals: {0}")]
    Mask(#[source] Errno),
    /// Creating the signalfd failed.
    #[error("cannot create signalfd: {0}")]
    SignalFd(#[source] Errno),
}

/// Signals init handles: SIGCHLD (reap), SIGTERM/SIGUSR2/SIGPWR (power off), SIGINT
/// (reboot; Ctrl-Alt-Del), SIGHUP (reload the configuration, `crate::reload`).
pub const HANDLED: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGUSR2,
    Signal::SIGPWR,
    Signal::SIGINT,
    Signal::SIGHUP,
];

/// Blocks [`HANDLED`] in the calling thread (call before spawning threads) and returns a
/// non-blocking signalfd that reads them.
pub fn block_and_open() -> Result<SignalFd, SignalError> {
    let mut set = SigSet::empty();
    for sig in HANDLED {
        set.add(*sig);
    }
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(SignalError::Mask)?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(SignalError::SignalFd)
}

/// Reads every pending signal from `fd`.
pub fn pending(fd: &SignalFd) -> Vec<Signal> {
    let mut out = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            out.push(sig);
        }
    }
    out
}

/// How a child ended, shell style: `code` is the exit code, or 128 + signal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code or 128 + signal.
    pub code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<Signal>,
}

impl ExitStatus {
    /// Converts a `waitpid` status; `None` for stops and continues.
    pub fn from_wait(status: WaitStatus) -> Option<(Pid, Self)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, Self { code, signal: None })),
            WaitStatus::Signaled(pid, sig, _) => Some((
                pid,
                Self {
                    code: 128 + sig as i32,
                    signal: Some(sig),
                },
            )),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.signal {
            Some(sig) => write!(f, "exit status {} ({})", self.code, sig.as_str()),
            None => write!(f, "exit status {}", self.code),
        }
    }
}

/// Reaps every child that has ended, without blocking. `Err(ECHILD)` from `waitpid` (no
/// children at all) ends the loop like `StillAlive` does.
/// The statuses of children [`output`] waits for are kept for it, not returned.
pub fn reap() -> Vec<(Pid, ExitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(status) => {
                let Some((pid, st)) = ExitStatus::from_wait(status) else {
                    continue;
                };
                let mut awaited = AWAITED.lock().unwrap_or_else(|e| e.into_inner());
                match awaited.get_mut(&pid.as_raw()) {
                    Some(slot) => *slot = Some(st),
                    None => out.push((pid, st)),
                }
            }
        }
    }
    out
}

/// Children another thread waits for in [`output`], and their statuses once [`reap`] got
/// them first.
static AWAITED: Mutex<BTreeMap<i32, Option<ExitStatus>>> = Mutex::new(BTreeMap::new());

/// `command.output()` that works in PID 1, from any thread: the main loop's `waitpid(-1)` may
/// reap the child before `std::process::Child::wait` does (then that fails with ECHILD), so
/// the child is registered before anything can reap it and its status is taken from
/// whichever `waitpid` gets it. Standard input is /dev/null.
pub fn output(command: &mut Command) -> std::io::Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = {
        // Held across the spawn: [`reap`] cannot look the child up before it is registered.
        let mut awaited = AWAITED.lock().unwrap_or_else(|e| e.into_inner());
        let child = command.spawn()?;
        awaited.insert(child.id() as i32, None);
        child
    };
    let pid = Pid::from_raw(child.id() as i32);
    let err_pipe = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = err_pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    });
    let mut stdout = Vec::new();
    if let Some(mut p) = child.stdout.take() {
        let _ = p.read_to_end(&mut stdout);
    }
    let stderr = stderr.join().unwrap_or_default();
    drop(child);
    let status = loop {
        let reaped = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => None,
            Ok(status) => ExitStatus::from_wait(status).map(|(_, st)| st),
            Err(e) => {
                AWAITED
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&pid.as_raw());
                return Err(e.into());
            }
        };
        let mut awaited = AWAITED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(st) = reaped.or_else(|| awaited.get(&pid.as_raw()).copied().flatten()) {
            awaited.remove(&pid.as_raw());
            break st;
        }
        drop(awaited);
        std::thread::sleep(Duration::from_millis(5));
    };
    use std::os::unix::process::ExitStatusExt;
    let raw = match status.signal {
        Some(sig) => sig as i32,
        None => (status.code & 0xff) << 8,
    };
    Ok(Output {
        status: std::process::ExitStatus::from_raw(raw),
        stdout,
        stderr,
    })
}

/// Whether init has any child left.
pub fn has_children() -> bool {
    !matches!(
        nix::sys::wait::waitid(
            nix::sys::wait::Id::All,
            WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::WEXITED
        ),
        Err(Errno::ECHILD)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signalled_children_are_128_plus_signal() {
        let pid = Pid::from_raw(42);
        let (_, st) =
            ExitStatus::from_wait(WaitStatus::Signaled(pid, Signal::SIGKILL, false)).unwrap();
        assert_eq!(st.code, 137);
        assert_eq!(st.to_string(), "exit status 137 (SIGKILL)");
        let (_, st) = ExitStatus::from_wait(WaitStatus::Exited(pid, 1)).unwrap();
        assert_eq!(st.to_string(), "exit status 1");
        assert!(ExitStatus::from_wait(WaitStatus::StillAlive).is_none());
    }
}
