//! Power: the last steps of a shutdown and the never-returning end of PID 1.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup;
use crate::console::Console;
use crate::reaper;
use crate::supervisor::Supervisor;

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

/// The orderly shutdown, each step timed on the console:
/// 1. the services ([`Supervisor::stop_all`]): extra services, then berthd — SIGTERM to the
///    service's cgroup, up to its stop timeout, then SIGKILL to the cgroup;
/// 2. what is left in `containers.slice` (shims and containers): SIGTERM, up to `timeout`,
///    then SIGKILL (`cgroup.kill`);
/// 3. every other process (`kill(-1)`): SIGTERM, up to `timeout`, SIGKILL;
/// 4. sync, unmount in reverse order, power off or reboot ([`finish`]).
///
/// Children are reaped throughout. Never returns.
pub fn shutdown(
    supervisor: &mut Supervisor,
    timeout: Duration,
    action: PowerAction,
    reason: &str,
    console: Console,
) -> ! {
    let began = Instant::now();
    console.notice(&format!("shutting down ({action}, {reason})"));
    let pid1 = is_pid1();
    let mut reap = || if pid1 { reaper::reap() } else { Vec::new() };
    supervisor.stop_all(&mut reap);
    if let Some(tree) = supervisor.cgroups() {
        stop_containers(&tree.containers(), timeout, console);
    }
    if pid1 {
        stop_the_rest(timeout, console);
    }
    console.notice(&format!(
        "services and processes stopped in {:.2}s",
        began.elapsed().as_secs_f64()
    ));
    finish(action, console)
}

/// Step 2 of [`shutdown`]: SIGTERM to everything under `containers.slice`, wait up to
/// `timeout` for it to empty, then SIGKILL the slice.
fn stop_containers(dir: &Path, timeout: Duration, console: Console) {
    if !cgroup::populated(dir).unwrap_or(false) {
        return;
    }
    let started = Instant::now();
    let count = cgroup::signal_all(dir, Signal::SIGTERM);
    let name = cgroup::CONTAINERS_SLICE;
    let empty = |limit: Duration| {
        let deadline = Instant::now() + limit;
        loop {
            if is_pid1() {
                reaper::reap();
            }
            if !cgroup::populated(dir).unwrap_or(false) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    if empty(timeout) {
        console.notice(&format!(
            "stopped {name} ({count} processes) in {:.2}s",
            started.elapsed().as_secs_f64()
        ));
        return;
    }
    console.warn(&format!(
        "{name} not empty {}s after SIGTERM; sending SIGKILL",
        timeout.as_secs()
    ));
    if let Err(e) = cgroup::kill_all(dir) {
        console.warn(&e.to_string());
    }
    let gone = empty(Duration::from_secs(5));
    console.notice(&format!(
        "stopped {name} ({count} processes) in {:.2}s (SIGKILL{})",
        started.elapsed().as_secs_f64(),
        if gone { "" } else { "; some still there" }
    ));
}

/// Step 3 of [`shutdown`]: every process but init (`kill(-1)` spares the caller).
fn stop_the_rest(timeout: Duration, console: Console) {
    let started = Instant::now();
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = started + timeout;
    loop {
        reaper::reap();
        if !reaper::has_children() {
            break;
        }
        if Instant::now() >= deadline {
            console.warn(&format!(
                "processes still running {}s after SIGTERM; killing them",
                timeout.as_secs()
            ));
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(200));
            reaper::reap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    console.debug(&format!(
        "other processes stopped in {:.2}s",
        started.elapsed().as_secs_f64()
    ));
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
