//! One row of the service table: a service's phase (pending, waiting to start, running,
//! exited, …), its restart tracker, its last output lines and its cgroup, with the signals
//! that reach all of it.

use std::path::PathBuf;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::control::{ServiceState, ServiceStatus};
use super::policy::Tracker;
use super::process::kill_run;
use super::spec::ServiceSpec;
use crate::cgroup;
use crate::console::{self, Console};
use crate::output::LastLines;
use crate::reaper::ExitStatus;

/// Where a service is in its life.
#[derive(Debug)]
pub(super) enum Phase {
    /// Not started yet ([`Supervisor::start`](super::Supervisor::start)).
    Pending,
    /// Start at `until`.
    Waiting { until: Instant },
    /// Running. `stop`: SIGTERM was sent for a restart; SIGKILL the cgroup at this instant.
    Running {
        pid: Pid,
        started: Instant,
        ready: bool,
        open_pipes: u8,
        stop: Option<Instant>,
    },
    /// Exited; waiting for its output to drain (or `deadline`) before deciding.
    Exited {
        pid: Pid,
        started: Instant,
        ready: bool,
        open_pipes: u8,
        deadline: Instant,
        status: ExitStatus,
    },
    /// Gave up.
    Failed,
    /// Exited and not restarted (restart policy).
    Done,
    /// Shut down.
    Stopped,
    /// Turned off by the configuration ([`Supervisor::turn_off`](super::Supervisor::turn_off));
    /// started again by [`Supervisor::upsert`](super::Supervisor::upsert).
    Off,
}

/// A service and its state.
#[derive(Debug)]
pub(super) struct Service {
    /// What to run.
    pub(super) spec: ServiceSpec,
    /// Where it is now.
    pub(super) phase: Phase,
    /// Its restart policy state.
    pub(super) tracker: Tracker,
    /// The last lines it wrote (quoted when init gives up on it).
    pub(super) last: Arc<Mutex<LastLines>>,
    /// The pid of the current run (0: none), for the readiness thread to notice a new run.
    pub(super) current: Arc<AtomicI32>,
    /// It has been ready at least once since boot.
    pub(super) ever_ready: bool,
    /// Its cgroup directory once created.
    pub(super) cgroup: Option<PathBuf>,
    /// Starts so far.
    pub(super) spawns: u32,
    /// How its last run ended.
    pub(super) last_exit: Option<ExitStatus>,
    /// Uptime when `phase` was entered.
    pub(super) since: Duration,
    /// A [`Control::restart`](super::Control::restart) is in progress: the next exit
    /// restarts at once.
    pub(super) restart_requested: bool,
    /// Being turned off: the next exit ends in [`Phase::Off`].
    pub(super) off_requested: bool,
}

impl Service {
    /// A service row for `spec`, in `phase`.
    pub(super) fn new(spec: ServiceSpec, phase: Phase) -> Self {
        Service {
            tracker: Tracker::new(spec.max_failures, spec.backoff).with_policy(spec.restart),
            spec,
            phase,
            last: Arc::default(),
            current: Arc::default(),
            ever_ready: false,
            cgroup: None,
            spawns: 0,
            last_exit: None,
            since: console::uptime(),
            restart_requested: false,
            off_requested: false,
        }
    }

    /// Moves to `phase`, noting when.
    pub(super) fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = console::uptime();
    }

    /// Its status as [`Control::status`](super::Control::status) reports it.
    pub(super) fn status(&self) -> ServiceStatus {
        let (state, pid) = match &self.phase {
            Phase::Pending => (ServiceState::Pending, None),
            Phase::Waiting { .. } | Phase::Exited { .. } => (ServiceState::Restarting, None),
            Phase::Running {
                pid, stop: Some(_), ..
            } => (ServiceState::Stopping, Some(pid.as_raw())),
            Phase::Running {
                pid, ready: false, ..
            } => (ServiceState::Starting, Some(pid.as_raw())),
            Phase::Running { pid, .. } => (ServiceState::Running, Some(pid.as_raw())),
            Phase::Failed => (ServiceState::Failed, None),
            Phase::Done => (ServiceState::Exited, None),
            Phase::Stopped => (ServiceState::Stopped, None),
            Phase::Off => (ServiceState::Off, None),
        };
        ServiceStatus {
            name: self.spec.name.clone(),
            state,
            pid,
            restarts: self.spawns.saturating_sub(1),
            last_exit: self.last_exit,
            since: self.since,
            cgroup: self.cgroup.clone(),
        }
    }

    /// Sends `signal` to the service's cgroup (every process in it), or without a cgroup to
    /// its process group.
    pub(super) fn signal(&self, pid: Pid, signal: Signal) {
        match &self.cgroup {
            Some(dir) => {
                cgroup::signal_all(dir, signal);
            }
            None => kill_run(pid, signal),
        }
    }

    /// SIGKILLs everything of the service: its cgroup, or its process group.
    pub(super) fn kill_all(&self, pid: Option<Pid>, console: Console) {
        match &self.cgroup {
            Some(dir) => {
                if let Err(e) = cgroup::kill_all(dir) {
                    console.warn(&format!("{}: {e}", self.spec.name));
                }
            }
            None => {
                if let Some(pid) = pid {
                    kill_run(pid, Signal::SIGKILL);
                }
            }
        }
    }

    /// Whether processes of the service are left (with a cgroup: any process in it).
    pub(super) fn has_processes(&self) -> bool {
        match &self.cgroup {
            Some(dir) => cgroup::populated(dir).unwrap_or(false),
            None => matches!(self.phase, Phase::Running { .. }),
        }
    }
}
