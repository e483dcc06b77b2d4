//! Power: the last steps of a shutdown and the never-returning end of PID 1.

use std::time::{Duration, Instant};

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::console::Console;
use crate::reaper;
use crate::supervisor::{self, Supervisor};

/// How the machine ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power off (`reboot: Power down` from the kernel).
    Poweroff,
    /// Reboot.
    Reboot,
}

impl From<crate::config::FatalAction> for PowerAction {
    fn from(action: crate::config::FatalAction) -> Self {
        match action {
            crate::config::FatalAction::Poweroff => Self::Poweroff,
            crate::config::FatalAction::Reboot => Self::Reboot,
        }
    }
}

impl std::fmt::Display for PowerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Poweroff => "power off",
            Self::Reboot => "reboot",
        })
    }
}

/// What to do when init itself fails (a panic in the main loop).
#[derive(Debug, Clone, Copy)]
pub struct FatalPolicy {
    /// Power off or reboot.
    pub action: PowerAction,
    /// SIGTERM-to-SIGKILL grace.
    pub timeout: Duration,
    /// Where to report.
    pub console: Console,
}

impl Default for FatalPolicy {
    fn default() -> Self {
        Self {
            action: PowerAction::Poweroff,
            timeout: Duration::from_secs(10),
            console: Console::default(),
        }
    }
}

/// Shutdown without the supervisor (it was lost to a panic): SIGTERM everything, wait,
/// SIGKILL, then [`finish`]. Never returns.
pub fn emergency_shutdown(policy: FatalPolicy) -> ! {
    let console = policy.console;
    if is_pid1() {
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        let deadline = Instant::now() + policy.timeout;
        while reaper::has_children() && Instant::now() < deadline {
            reaper::reap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        std::thread::sleep(Duration::from_millis(100));
        reaper::reap();
    }
    finish(policy.action, console)
}

fn is_pid1() -> bool {
    nix::unistd::getpid() == Pid::from_raw(1)
}

/// The orderly shutdown: SIGTERM to the services and then to every process, wait up to
/// `timeout` while reaping, SIGKILL what is left, sync, unmount in reverse order, and
/// power off or reboot. Never returns.
pub fn shutdown(
    supervisor: &mut Supervisor,
    timeout: Duration,
    action: PowerAction,
    reason: &str,
    console: Console,
) -> ! {
    console.notice(&format!("shutting down ({action}, {reason})"));
    let services = supervisor.begin_shutdown();
    for pid in &services {
        supervisor::kill_run(*pid, Signal::SIGTERM);
    }
    if is_pid1() {
        // Everything else too (kill(-1) spares init itself).
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    }
    let deadline = Instant::now() + timeout;
    loop {
        for (pid, status) in reaper::reap() {
            supervisor.on_exit(pid, status, Instant::now());
        }
        let left = if is_pid1() {
            reaper::has_children()
        } else {
            supervisor.any_running()
        };
        if !left {
            break;
        }
        if Instant::now() >= deadline {
            console.warn(&format!(
                "processes still running after {}s; killing them",
                timeout.as_secs()
            ));
            for pid in &services {
                supervisor::kill_run(*pid, Signal::SIGKILL);
            }
            if is_pid1() {
                let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(200));
            reaper::reap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    finish(action, console)
}

/// Syncs, unmounts what it can and powers off or reboots. Outside PID 1 (development) it
/// exits instead. Never returns.
pub fn finish(action: PowerAction, console: Console) -> ! {
    nix::unistd::sync();
    if !is_pid1() {
        console.info(&format!("not PID 1; exiting instead of {action}"));
        std::process::exit(0);
    }
    let busy = crate::mounts::unmount_all();
    if !busy.is_empty() {
        console.debug(&format!("{} mounts still busy", busy.len()));
    }
    nix::unistd::sync();
    let mode = match action {
        PowerAction::Poweroff => RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
    };
    let Err(errno) = nix::sys::reboot::reboot(mode);
    console.error(&format!("reboot(2) failed: {errno}"));
    halt_forever()
}

/// Last resort when even reboot(2) failed: PID 1 must not exit.
pub fn halt_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
