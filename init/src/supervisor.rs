//! Service supervision: start berthd and the extra `[[service]]`s, each in its own cgroup
//! `system.slice/<name>`, forward their output, check readiness, restart them per their
//! policy with exponential back-off, give up after repeated failures, stop them in order at
//! shutdown.
//!
//! A *failure* is an exit before the service became ready, or any exit within
//! [`QUICK_EXIT`] of its start. After `max_failures` failures in a row init gives up on the
//! service and says why on one line (with the last line the service wrote); the node stays
//! up. A service that ran fine for a while and then died is restarted after the initial
//! delay, and its failure count starts over. The restart policy ([`RestartPolicy`]) decides
//! whether an exit is followed by a restart at all.
//!
//! When a service's main process exits, whatever it left in its cgroup is killed with it
//! (`cgroup.kill`), so a restart starts from an empty cgroup; `containers.slice` is never
//! touched here. Services must therefore not daemonize.
//!
//! Services wait for [`Supervisor::start`]: stage 2 calls it as its *engine* stage, after
//! storage, network and time. Other threads (the init control API) see and act on the
//! services through a [`Control`] handle ([`Supervisor::control`]).
//!
//! The policy ([`Backoff`], [`Tracker`]) is pure and unit-tested; [`Supervisor`] adds
//! processes, cgroups, threads and console lines around it.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Resources, Tree};
use crate::console::{self, Console};
use crate::events;
use crate::output::{self, LastLines, Stream};
use crate::reaper::ExitStatus;

/// An exit this soon after the start counts as a failure even if the service was ready.
pub const QUICK_EXIT: Duration = Duration::from_secs(10);

/// How long to wait, after a service exited, for the rest of its output before deciding
/// what to do (so its last words appear before init's verdict).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How long a killed cgroup may take to empty before init gives up waiting for it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// `PATH` services start with.
const SERVICE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// When a service that exited is started again (`restart` in `init.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After any exit (the default; berthd always).
    #[default]
    Always,
    /// After an exit with a non-zero status or a signal; exit 0 means done.
    OnFailure,
    /// Never: the service runs once.
    Never,
}

/// Restart delays: `initial`, doubled per failure in a row, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Backoff {
    /// The delay before the restart that follows `failures` failures in a row (at least 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        self.initial
            .saturating_mul(1u32 << shift)
            .min(self.max.max(self.initial))
    }
}

/// What happens after a service exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after `delay`; `failures` in a row so far (0 after a good run).
    Restart {
        /// Wait this long.
        delay: Duration,
        /// Failures in a row, this one included.
        failures: u32,
    },
    /// Stop trying after `failures` failures in a row.
    GiveUp {
        /// Failures in a row.
        failures: u32,
    },
    /// Stop trying at once: the service said its configuration is invalid, and starting it
    /// again from the same read-only files cannot help.
    GiveUpConfig,
    /// Not restarted: the restart policy says this exit ends the service.
    Done,
}

pub use berth_api::EXIT_CONFIG;

/// The restart policy state of one service.
#[derive(Debug, Clone)]
pub struct Tracker {
    max_failures: u32,
    backoff: Backoff,
    policy: RestartPolicy,
    failures: u32,
}

impl Tracker {
    /// A tracker giving up after `max_failures` (at least 1) failures in a row, restarting
    /// after any exit ([`RestartPolicy::Always`]).
    pub fn new(max_failures: u32, backoff: Backoff) -> Self {
        Self {
            max_failures: max_failures.max(1),
            backoff,
            policy: RestartPolicy::Always,
            failures: 0,
        }
    }

    /// The same with another restart policy.
    pub fn with_policy(self, policy: RestartPolicy) -> Self {
        Self { policy, ..self }
    }

    /// Whether an exit counts as a failure.
    pub fn is_failure(was_ready: bool, ran: Duration) -> bool {
        !was_ready || ran < QUICK_EXIT
    }

    /// Records an exit (or a failed spawn, `failure = true`) and decides. `bad_config`: the
    /// service exited with [`EXIT_CONFIG`] before it was ready. `clean`: it exited with
    /// status 0 (what [`RestartPolicy::OnFailure`] looks at).
    pub fn on_exit(&mut self, failure: bool, bad_config: bool, clean: bool) -> Decision {
        match self.policy {
            RestartPolicy::Never => return Decision::Done,
            RestartPolicy::OnFailure if clean => return Decision::Done,
            _ => {}
        }
        if bad_config {
            self.failures += 1;
            return Decision::GiveUpConfig;
        }
        if !failure {
            self.failures = 0;
            return Decision::Restart {
                delay: self.backoff.initial,
                failures: 0,
            };
        }
        self.failures += 1;
        if self.failures >= self.max_failures {
            Decision::GiveUp {
                failures: self.failures,
            }
        } else {
            Decision::Restart {
                delay: self.backoff.delay(self.failures),
                failures: self.failures,
            }
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures (a restart asked for by an operator).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The configured limit.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }
}

/// How init decides a service is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// berthd: a Version call on `address` answered. The first time, init prints
    /// `berth ready`. Services with this readiness are the engine: stopped last.
    Version {
        /// API address.
        address: String,
        /// Give up waiting (and kill it) after this long.
        timeout: Duration,
    },
    /// Ready as soon as it runs.
    Running,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Console and message name; also its cgroup `system.slice/<name>`.
    pub name: String,
    /// Executable.
    pub path: PathBuf,
    /// Arguments after argv[0].
    pub args: Vec<String>,
    /// Failures in a row before giving up.
    pub max_failures: u32,
    /// Restart delays.
    pub backoff: Backoff,
    /// How readiness is decided.
    pub readiness: Readiness,
    /// When an exit is followed by a restart.
    pub restart: RestartPolicy,
    /// SIGTERM-to-SIGKILL grace when the service is stopped.
    pub stop_timeout: Duration,
    /// cgroup reservations and limits.
    pub resources: Resources,
    /// Where the service is configured, for messages (`berthd`, `service[0]`).
    pub config_key: String,
}

/// Messages from the supervisor's helper threads (and [`Control`] handles) to the main loop.
#[derive(Debug)]
pub enum Event {
    /// A readiness check finished (`Ok(version)` or why not).
    Ready {
        /// Service index.
        service: usize,
        /// The run it is about.
        pid: i32,
        /// berthd's version, or the error.
        result: Result<String, ReadyError>,
    },
    /// One of a run's output pipes reached end of stream.
    OutputClosed {
        /// Service index.
        service: usize,
        /// The run it is about.
        pid: i32,
    },
    /// [`Control::restart`]: restart the service called `name`; the outcome goes to `reply`.
    Restart {
        /// Service name.
        name: String,
        /// Where the answer goes.
        reply: mpsc::Sender<Result<(), ControlError>>,
    },
}

/// Why a readiness check gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyError {
    /// No answer within the timeout; the last client error.
    Timeout(Duration, String),
    /// The client code panicked (reported once; the service keeps running).
    Panicked,
}

/// Why a [`Control`] request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No service has this name.
    #[error("no service called {0:?}")]
    UnknownService(String),
    /// The services have not been started yet (the engine stage is not reached).
    #[error("service {0:?} has not been started yet")]
    NotStarted(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The main loop did not answer in time (it is busy, or gone).
    #[error("init's main loop did not answer within {0:?}")]
    NoAnswer(Duration),
}

/// A service's state as [`Control::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Waiting for the engine stage ([`Supervisor::start`]).
    Pending,
    /// Running, not ready yet (berthd before it answers Version).
    Starting,
    /// Running and ready.
    Running,
    /// Asked to stop (SIGTERM sent), not gone yet.
    Stopping,
    /// Exited; restarting after a back-off delay (or draining its output first).
    Restarting,
    /// Exited and not restarted, by its restart policy.
    Exited,
    /// Gave up after repeated failures or an invalid configuration.
    Failed,
    /// Stopped for shutdown.
    Stopped,
}

/// One service's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service name.
    pub name: String,
    /// Its state.
    pub state: ServiceState,
    /// The running process, if any.
    pub pid: Option<i32>,
    /// How many times it was started again after the first start.
    pub restarts: u32,
    /// How its last run ended.
    pub last_exit: Option<ExitStatus>,
    /// Uptime (`CLOCK_BOOTTIME`) when it entered `state`.
    pub since: Duration,
    /// Its cgroup, when it runs in one.
    pub cgroup: Option<PathBuf>,
}

/// A handle other threads use to see and restart services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    status: Arc<Mutex<Vec<ServiceStatus>>>,
    events: events::Sender<Event>,
}

impl Control {
    /// The status of every service, in configuration order (berthd first), as of the main
    /// loop's last change.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Restarts service `name`: SIGTERM to its cgroup, SIGKILL to the cgroup after its stop
    /// timeout, then a new start (not counted as a failure). A failed or exited service is
    /// started again. Returns once the main loop accepted the request (not when the new run
    /// is up: watch [`Control::status`]).
    pub fn restart(&self, name: &str, timeout: Duration) -> Result<(), ControlError> {
        let (tx, rx) = mpsc::channel();
        self.events.send(Event::Restart {
            name: name.to_string(),
            reply: tx,
        });
        rx.recv_timeout(timeout)
            .unwrap_or(Err(ControlError::NoAnswer(timeout)))
    }
}

#[derive(Debug)]
enum Phase {
    /// Not started yet ([`Supervisor::start`]).
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
}

#[derive(Debug)]
struct Service {
    spec: ServiceSpec,
    phase: Phase,
    tracker: Tracker,
    last: Arc<Mutex<LastLines>>,
    current: Arc<AtomicI32>,
    ever_ready: bool,
    /// Its cgroup directory once created.
    cgroup: Option<PathBuf>,
    /// Starts so far.
    spawns: u32,
    last_exit: Option<ExitStatus>,
    /// Uptime when `phase` was entered.
    since: Duration,
    /// A [`Control::restart`] is in progress: the next exit restarts at once.
    restart_requested: bool,
}

impl Service {
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = console::uptime();
    }

    fn status(&self) -> ServiceStatus {
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
    fn signal(&self, pid: Pid, signal: Signal) {
        match &self.cgroup {
            Some(dir) => {
                cgroup::signal_all(dir, signal);
            }
            None => kill_run(pid, signal),
        }
    }

    /// SIGKILLs everything of the service: its cgroup, or its process group.
    fn kill_all(&self, pid: Option<Pid>, console: Console) {
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
    fn has_processes(&self) -> bool {
        match &self.cgroup {
            Some(dir) => cgroup::populated(dir).unwrap_or(false),
            None => matches!(self.phase, Phase::Running { .. }),
        }
    }
}

/// Runs and watches the services. Owned by the main loop.
#[derive(Debug)]
pub struct Supervisor {
    services: Vec<Service>,
    console: Console,
    events: events::Sender<Event>,
    cgroups: Option<Tree>,
    status: Arc<Mutex<Vec<ServiceStatus>>>,
    announced: bool,
    shutting_down: bool,
}

impl Supervisor {
    /// A supervisor for `specs`; nothing starts before [`Supervisor::start`]. A second
    /// service with the same name as an earlier one is refused with an error line (they
    /// would share a cgroup).
    pub fn new(specs: Vec<ServiceSpec>, console: Console, events: events::Sender<Event>) -> Self {
        let mut services: Vec<Service> = Vec::new();
        for spec in specs {
            if services.iter().any(|s| s.spec.name == spec.name) {
                console.error(&format!(
                    "{}: a service called {:?} exists already; ignored",
                    spec.config_key, spec.name
                ));
                continue;
            }
            services.push(Service {
                tracker: Tracker::new(spec.max_failures, spec.backoff).with_policy(spec.restart),
                spec,
                phase: Phase::Pending,
                last: Arc::default(),
                current: Arc::default(),
                ever_ready: false,
                cgroup: None,
                spawns: 0,
                last_exit: None,
                since: console::uptime(),
                restart_requested: false,
            });
        }
        let supervisor = Self {
            services,
            console,
            events,
            cgroups: None,
            status: Arc::default(),
            announced: false,
            shutting_down: false,
        };
        supervisor.publish();
        supervisor
    }

    /// Runs each service in its own cgroup under `tree` (`system.slice/<name>`).
    pub fn with_cgroups(mut self, tree: Tree) -> Self {
        self.cgroups = Some(tree);
        self
    }

    /// The cgroup tree, if services run in cgroups.
    pub fn cgroups(&self) -> Option<&Tree> {
        self.cgroups.as_ref()
    }

    /// Whether `berth ready` was announced (the engine answered once since boot).
    pub fn announced(&self) -> bool {
        self.announced
    }

    /// The engine stage: every service starts on the next [`Supervisor::tick`].
    pub fn start(&mut self, now: Instant) {
        for svc in &mut self.services {
            if matches!(svc.phase, Phase::Pending) {
                svc.enter(Phase::Waiting { until: now });
            }
        }
        self.publish();
    }

    /// A handle for other threads: status and restart.
    pub fn control(&self) -> Control {
        Control {
            status: Arc::clone(&self.status),
            events: self.events.clone(),
        }
    }

    /// The status of every service (what [`Control::status`] returns).
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.services.iter().map(Service::status).collect()
    }

    fn publish(&self) {
        if let Ok(mut status) = self.status.lock() {
            *status = self.status();
        }
    }

    /// Starts due services, settles exits whose output grace ran out, and kills services
    /// that did not stop within their stop timeout.
    pub fn tick(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        for i in 0..self.services.len() {
            match self.services[i].phase {
                Phase::Waiting { until } if until <= now => self.spawn(i, now),
                Phase::Exited { deadline, .. } if deadline <= now => self.settle(i, now),
                Phase::Running {
                    pid,
                    stop: Some(at),
                    ..
                } if at <= now => {
                    let svc = &mut self.services[i];
                    self.console.warn(&format!(
                        "{} (pid {pid}) did not stop within {}s of SIGTERM; killing it",
                        svc.spec.name,
                        svc.spec.stop_timeout.as_secs_f64()
                    ));
                    svc.kill_all(Some(pid), self.console);
                    if let Phase::Running { stop, .. } = &mut svc.phase {
                        *stop = None;
                    }
                }
                _ => {}
            }
        }
        self.publish();
    }

    /// When [`Supervisor::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .iter()
            .filter_map(|s| match s.phase {
                Phase::Waiting { until } => Some(until),
                Phase::Exited { deadline, .. } => Some(deadline),
                Phase::Running { stop, .. } => stop,
                _ => None,
            })
            .min()
    }

    /// Handles a helper thread's event.
    pub fn handle(&mut self, event: Event, now: Instant) {
        match event {
            Event::OutputClosed { service, pid } => {
                let Some(svc) = self.services.get_mut(service) else {
                    return;
                };
                match &mut svc.phase {
                    Phase::Running {
                        pid: p, open_pipes, ..
                    }
                    | Phase::Exited {
                        pid: p, open_pipes, ..
                    } if p.as_raw() == pid => {
                        *open_pipes = open_pipes.saturating_sub(1);
                    }
                    _ => return,
                }
                if matches!(svc.phase, Phase::Exited { open_pipes: 0, .. }) {
                    self.settle(service, now);
                }
            }
            Event::Ready {
                service,
                pid,
                result,
            } => self.on_ready(service, pid, result),
            Event::Restart { name, reply } => {
                let result = self.request_restart(&name, now);
                let _ = reply.send(result);
            }
        }
        self.publish();
    }

    fn request_restart(&mut self, name: &str, now: Instant) -> Result<(), ControlError> {
        if self.shutting_down {
            return Err(ControlError::ShuttingDown);
        }
        let console = self.console;
        let svc = self
            .services
            .iter_mut()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| ControlError::UnknownService(name.to_string()))?;
        match svc.phase {
            Phase::Pending => return Err(ControlError::NotStarted(name.to_string())),
            Phase::Stopped => return Err(ControlError::ShuttingDown),
            Phase::Running {
                pid, stop: None, ..
            } => {
                console.notice(&format!("restarting {name} (pid {pid}) on request"));
                svc.restart_requested = true;
                svc.signal(pid, Signal::SIGTERM);
                let deadline = now + svc.spec.stop_timeout;
                if let Phase::Running { stop, .. } = &mut svc.phase {
                    *stop = Some(deadline);
                }
            }
            // Already stopping, or exited and about to be decided: restart once it settles.
            Phase::Running { .. } | Phase::Exited { .. } => svc.restart_requested = true,
            Phase::Waiting { .. } | Phase::Failed | Phase::Done => {
                console.notice(&format!("starting {name} on request"));
                svc.tracker.reset();
                svc.restart_requested = false;
                svc.enter(Phase::Waiting { until: now });
            }
        }
        Ok(())
    }

    fn on_ready(&mut self, service: usize, pid: i32, result: Result<String, ReadyError>) {
        let console = self.console;
        let Some(svc) = self.services.get_mut(service) else {
            return;
        };
        let Phase::Running { pid: p, ready, .. } = &mut svc.phase else {
            return;
        };
        if p.as_raw() != pid || self.shutting_down {
            return;
        }
        match result {
            Ok(version) => {
                *ready = true;
                svc.ever_ready = true;
                svc.since = console::uptime();
                let name = &svc.spec.name;
                if !self.announced {
                    self.announced = true;
                    let up = console::uptime().as_secs_f64();
                    console.notice(&format!("berth ready ({name} {version}, uptime {up:.2}s)"));
                } else {
                    console.notice(&format!("{name} ready again (pid {pid}, {name} {version})"));
                }
            }
            Err(ReadyError::Timeout(timeout, last)) => {
                console.warn(&format!(
                    "{} (pid {pid}) not ready after {}s (last error: {last}); killing it",
                    svc.spec.name,
                    timeout.as_secs()
                ));
                let pid = *p;
                svc.kill_all(Some(pid), console);
            }
            Err(ReadyError::Panicked) => {
                console.error(&format!(
                    "readiness check of {} panicked; not checking it any more",
                    svc.spec.name
                ));
            }
        }
    }

    /// Records a reaped child. Returns false if it is not one of the services (an orphan).
    /// What the service left in its cgroup is killed with it (not during shutdown, which
    /// stops cgroups itself).
    pub fn on_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> bool {
        let Some(i) = self
            .services
            .iter()
            .position(|s| matches!(s.phase, Phase::Running { pid: p, .. } if p == pid))
        else {
            return false;
        };
        let console = self.console;
        let shutting_down = self.shutting_down;
        let svc = &mut self.services[i];
        svc.current.store(0, Ordering::SeqCst);
        svc.last_exit = Some(status);
        if !shutting_down && svc.cgroup.is_some() && svc.has_processes() {
            console.debug(&format!(
                "{} exited; killing what it left in its cgroup",
                svc.spec.name
            ));
            svc.kill_all(None, console);
        }
        if shutting_down {
            // No decision to make, and no reason to wait for its last output.
            svc.enter(Phase::Stopped);
        } else if let Phase::Running {
            started,
            ready,
            open_pipes,
            ..
        } = svc.phase
        {
            svc.enter(Phase::Exited {
                pid,
                started,
                ready,
                open_pipes,
                deadline: now + OUTPUT_GRACE,
                status,
            });
            if open_pipes == 0 {
                self.settle(i, now);
            }
        }
        self.publish();
        true
    }

    /// Decides what to do about an exited service.
    fn settle(&mut self, i: usize, now: Instant) {
        let svc = &mut self.services[i];
        let Phase::Exited {
            pid,
            started,
            ready,
            status,
            ..
        } = svc.phase
        else {
            return;
        };
        if self.shutting_down {
            svc.enter(Phase::Stopped);
            return;
        }
        let ran = now.saturating_duration_since(started);
        if std::mem::take(&mut svc.restart_requested) {
            self.console.notice(&format!(
                "{} (pid {pid}) stopped after {:.1}s: {status}; starting it again",
                svc.spec.name,
                ran.as_secs_f64()
            ));
            svc.tracker.reset();
            svc.enter(Phase::Waiting { until: now });
            return;
        }
        let failure = Tracker::is_failure(ready, ran);
        let reason = status.to_string();
        let bad_config = !ready && status.signal.is_none() && status.code == EXIT_CONFIG;
        let clean = status.signal.is_none() && status.code == 0;
        let what = if !ready {
            format!(
                "{} (pid {pid}) exited before becoming ready: {reason}",
                svc.spec.name
            )
        } else {
            format!(
                "{} (pid {pid}) exited after {:.1}s: {reason}",
                svc.spec.name,
                ran.as_secs_f64()
            )
        };
        self.decide(i, failure, bad_config, clean, what, reason, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn decide(
        &mut self,
        i: usize,
        failure: bool,
        bad_config: bool,
        clean: bool,
        what: String,
        reason: String,
        now: Instant,
    ) {
        let console = self.console;
        let svc = &mut self.services[i];
        match svc.tracker.on_exit(failure, bad_config, clean) {
            Decision::Restart { delay, failures } => {
                let count = if failures > 0 {
                    format!(" (failure {failures} of {})", svc.tracker.max_failures())
                } else {
                    String::new()
                };
                console.warn(&format!(
                    "{what}; restarting in {}ms{count}",
                    delay.as_millis()
                ));
                svc.enter(Phase::Waiting { until: now + delay });
            }
            Decision::GiveUp { failures } => {
                let last = svc
                    .last
                    .lock()
                    .ok()
                    .and_then(|l| l.best().map(str::to_string));
                console.error(&format!(
                    "{} cannot start: {reason} after {failures} attempts; last error: {}",
                    svc.spec.name,
                    last.as_deref().unwrap_or("(no output)")
                ));
                svc.enter(Phase::Failed);
            }
            Decision::GiveUpConfig => {
                let last = svc
                    .last
                    .lock()
                    .ok()
                    .and_then(|l| l.best().map(str::to_string));
                console.error(&format!(
                    "{} cannot start: invalid configuration ({reason}); not restarting; last error: {}",
                    svc.spec.name,
                    last.as_deref().unwrap_or("(no output)")
                ));
                svc.enter(Phase::Failed);
            }
            Decision::Done => {
                let policy = match svc.spec.restart {
                    RestartPolicy::Always => "always",
                    RestartPolicy::OnFailure => "on-failure",
                    RestartPolicy::Never => "never",
                };
                let line = format!("{what}; not restarting (restart = {policy})");
                if clean {
                    console.info(&line);
                } else {
                    console.warn(&line);
                }
                svc.enter(Phase::Done);
            }
        }
    }

    /// Creates the service's cgroup (first start) and makes sure nothing of an earlier run is
    /// left in it. `None` when services run without cgroups or the cgroup is unusable (said
    /// on the console; the service then runs in init's cgroup).
    fn prepare_cgroup(&mut self, i: usize) -> Option<cgroup::ServiceCgroup> {
        let console = self.console;
        let tree = self.cgroups.as_ref()?;
        let svc = &mut self.services[i];
        let key = format!("{}.resources", svc.spec.config_key);
        let (cg, errors) = match tree.prepare_service(&svc.spec.name, &svc.spec.resources, &key) {
            Ok(pair) => pair,
            Err(e) => {
                if svc.spawns == 0 {
                    console.error(&format!(
                        "{}: {e}; running it without its own cgroup",
                        svc.spec.name
                    ));
                }
                return None;
            }
        };
        if svc.spawns == 0 {
            for e in errors {
                console.error(&format!("{}: {e}", svc.spec.name));
            }
        }
        svc.cgroup = Some(cg.dir.clone());
        // Leftovers of the previous run (killed when it exited) may take a moment to go.
        if svc.has_processes() {
            svc.kill_all(None, console);
            let deadline = Instant::now() + KILL_GRACE;
            while self.services[i].has_processes() && Instant::now() < deadline {
                for (pid, status) in crate::reaper::reap() {
                    self.on_exit(pid, status, Instant::now());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.services[i].has_processes() {
                console.warn(&format!(
                    "{}: processes of the previous run are still in {} after {}s",
                    self.services[i].spec.name,
                    cg.dir.display(),
                    KILL_GRACE.as_secs()
                ));
            }
        }
        Some(cg)
    }

    fn spawn(&mut self, i: usize, now: Instant) {
        let console = self.console;
        let events = self.events.clone();
        let cgroup = self.prepare_cgroup(i);
        let svc = &mut self.services[i];
        svc.spawns += 1;
        if let Ok(mut last) = svc.last.lock() {
            *last = LastLines::default();
        }
        let mut command = Command::new(&svc.spec.path);
        command
            .args(&svc.spec.args)
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
        let procs_fd = cgroup.as_ref().map(|cg| cg.procs.as_raw_fd()).unwrap_or(-1);
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (sigemptyset, pthread_sigmask, write) on a local set and
        // on `procs_fd`, which stays open in the parent (`cgroup` lives until after spawn).
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
        let spawned = command.spawn();
        drop(cgroup);
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                let reason = format!("cannot execute {}: {err}", svc.spec.path.display());
                if let Ok(mut last) = svc.last.lock() {
                    last.stderr = Some(reason.clone());
                }
                let what = format!("{}: {reason}", svc.spec.name);
                self.decide(i, true, false, false, what, reason, now);
                return;
            }
        };
        let pid = Pid::from_raw(child.id() as i32);
        console.debug(&format!("started {} (pid {pid})", svc.spec.name));
        svc.current.store(pid.as_raw(), Ordering::SeqCst);
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
            let name = svc.spec.name.clone();
            let last = Arc::clone(&svc.last);
            let events = events.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-out"))
                .spawn(move || {
                    output::forward(pipe, &name, stream, console, &last);
                    events.send(Event::OutputClosed {
                        service: i,
                        pid: pid.as_raw(),
                    });
                });
            if spawned.is_ok() {
                open_pipes += 1;
            }
        }
        // The child is reaped by the main loop's waitpid(-1); dropping the handle is fine.
        drop(child);
        let ready = match &svc.spec.readiness {
            Readiness::Running => true,
            Readiness::Version { address, timeout } => {
                let (address, timeout, current) =
                    (address.clone(), *timeout, Arc::clone(&svc.current));
                let _ = std::thread::Builder::new()
                    .name("readiness".into())
                    .spawn(move || {
                        if let Some(result) = wait_ready(&address, timeout, pid.as_raw(), &current)
                        {
                            events.send(Event::Ready {
                                service: i,
                                pid: pid.as_raw(),
                                result,
                            });
                        }
                    });
                false
            }
        };
        svc.enter(Phase::Running {
            pid,
            started: now,
            ready,
            open_pipes,
            stop: None,
        });
    }

    /// Stops restarting; services not running are marked stopped. Returns the process ids of
    /// the running services.
    pub fn begin_shutdown(&mut self) -> Vec<Pid> {
        self.shutting_down = true;
        let mut pids = Vec::new();
        for svc in &mut self.services {
            svc.current.store(0, Ordering::SeqCst);
            match svc.phase {
                Phase::Running { pid, .. } => pids.push(pid),
                Phase::Pending | Phase::Waiting { .. } | Phase::Exited { .. } => {
                    svc.enter(Phase::Stopped)
                }
                Phase::Failed | Phase::Done | Phase::Stopped => {}
            }
        }
        self.publish();
        pids
    }

    /// The shutdown of the services: the extra services together, then the engine (services
    /// with [`Readiness::Version`]). Each gets SIGTERM (its whole cgroup), then after its
    /// `stop_timeout` SIGKILL (its whole cgroup); a line per service says how long its stop
    /// took. `reap` collects exited children (init's `waitpid(-1)`); the supervisor sees
    /// every exit it returns.
    pub fn stop_all(&mut self, reap: &mut dyn FnMut() -> Vec<(Pid, ExitStatus)>) {
        self.begin_shutdown();
        let (extras, engine): (Vec<usize>, Vec<usize>) = (0..self.services.len())
            .partition(|&i| self.services[i].spec.readiness == Readiness::Running);
        for group in [extras, engine] {
            self.stop_group(&group, reap);
        }
        self.publish();
    }

    fn stop_group(&mut self, group: &[usize], reap: &mut dyn FnMut() -> Vec<(Pid, ExitStatus)>) {
        let console = self.console;
        let start = Instant::now();
        // (index, SIGTERM deadline, killed at)
        let mut pending: Vec<(usize, Instant, Option<Instant>)> = Vec::new();
        for &i in group {
            let svc = &self.services[i];
            let pid = match svc.phase {
                Phase::Running { pid, .. } => Some(pid),
                _ => None,
            };
            if pid.is_none() && !(svc.cgroup.is_some() && svc.has_processes()) {
                continue;
            }
            match pid {
                Some(pid) => svc.signal(pid, Signal::SIGTERM),
                None => {
                    if let Some(dir) = &svc.cgroup {
                        cgroup::signal_all(dir, Signal::SIGTERM);
                    }
                }
            }
            pending.push((i, start + svc.spec.stop_timeout, None));
        }
        while !pending.is_empty() {
            for (pid, status) in reap() {
                self.on_exit(pid, status, Instant::now());
            }
            let now = Instant::now();
            pending.retain_mut(|(i, deadline, killed)| {
                let svc = &self.services[*i];
                let main_gone = !matches!(svc.phase, Phase::Running { .. });
                let gone = main_gone && (svc.cgroup.is_none() || !svc.has_processes());
                let took = now.duration_since(start).as_secs_f64();
                if gone {
                    let how = if killed.is_some() { " (SIGKILL)" } else { "" };
                    console.notice(&format!("stopped {} in {took:.2}s{how}", svc.spec.name));
                    return false;
                }
                match killed {
                    None if now >= *deadline => {
                        let pid = match svc.phase {
                            Phase::Running { pid, .. } => Some(pid),
                            _ => None,
                        };
                        console.warn(&format!(
                            "{} did not stop within {}s of SIGTERM; sending SIGKILL",
                            svc.spec.name,
                            svc.spec.stop_timeout.as_secs_f64()
                        ));
                        svc.kill_all(pid, console);
                        *killed = Some(now);
                        true
                    }
                    Some(at) if now >= *at + KILL_GRACE => {
                        console.warn(&format!(
                            "{} still has processes {took:.2}s after SIGKILL; going on",
                            svc.spec.name
                        ));
                        false
                    }
                    _ => true,
                }
            });
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether any service process is still running.
    pub fn any_running(&self) -> bool {
        self.services
            .iter()
            .any(|s| matches!(s.phase, Phase::Running { .. }))
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

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_millis(5000),
    };

    #[test]
    fn backoff_doubles_and_caps() {
        let ms: Vec<u128> = (1..=8).map(|n| B.delay(n).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(B.delay(0).as_millis(), 200);
        assert_eq!(B.delay(u32::MAX), Duration::from_millis(5000));
        let odd = Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(1),
        };
        assert_eq!(odd.delay(3), Duration::from_secs(10));
    }

    #[test]
    fn failure_classification() {
        assert!(Tracker::is_failure(false, Duration::from_secs(100)));
        assert!(Tracker::is_failure(true, Duration::from_secs(1)));
        assert!(!Tracker::is_failure(true, QUICK_EXIT));
    }

    #[test]
    fn gives_up_after_max_failures_in_a_row() {
        let mut t = Tracker::new(3, B);
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 1
            }
        );
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::Restart {
                delay: Duration::from_millis(400),
                failures: 2
            }
        );
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn a_good_run_resets_the_count() {
        let mut t = Tracker::new(2, B);
        assert!(matches!(
            t.on_exit(true, false, false),
            Decision::Restart { failures: 1, .. }
        ));
        assert_eq!(
            t.on_exit(false, false, true),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 0
            }
        );
        assert!(matches!(
            t.on_exit(true, false, false),
            Decision::Restart { failures: 1, .. }
        ));
        assert_eq!(t.failures(), 1);
    }

    #[test]
    fn zero_max_failures_means_one() {
        let mut t = Tracker::new(0, B);
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::GiveUp { failures: 1 }
        );
    }

    #[test]
    fn invalid_configuration_gives_up_at_once() {
        let mut t = Tracker::new(5, B);
        assert_eq!(t.on_exit(true, true, false), Decision::GiveUpConfig);
        assert_eq!(t.failures(), 1);
    }

    fn spec(name: &str, path: &str, args: &[&str], max_failures: u32) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            path: path.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            max_failures,
            backoff: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(20),
            },
            readiness: Readiness::Running,
            restart: RestartPolicy::Always,
            stop_timeout: Duration::from_secs(5),
            resources: Resources::default(),
            config_key: format!("service.{name}"),
        }
    }

    /// Drives a supervisor with real processes until `done` or a 10 s guard.
    fn drive(
        sup: &mut Supervisor,
        rx: &events::Receiver<Event>,
        pids: &[Pid],
        mut done: impl FnMut(&Supervisor) -> bool,
    ) {
        let guard = Instant::now() + Duration::from_secs(10);
        let mut mine: Vec<Pid> = pids.to_vec();
        while !done(sup) {
            assert!(Instant::now() < guard, "supervisor test timed out: {sup:?}");
            let now = Instant::now();
            sup.tick(now);
            for svc in &sup.services {
                if let Phase::Running { pid, .. } = svc.phase {
                    if !mine.contains(&pid) {
                        mine.push(pid);
                    }
                }
            }
            for ev in rx.drain() {
                sup.handle(ev, Instant::now());
            }
            // Only wait for our own children: other tests run in parallel threads.
            for pid in &mine {
                if let Ok(st) =
                    nix::sys::wait::waitpid(*pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                {
                    if let Some((pid, st)) = ExitStatus::from_wait(st) {
                        sup.on_exit(pid, st, Instant::now());
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn crashing_service_is_restarted_then_given_up() {
        let (tx, rx) = events::channel().unwrap();
        let svc = spec("crasher", "/bin/sh", &["-c", "echo boom >&2; exit 3"], 3);
        let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| {
            matches!(s.services[0].phase, Phase::Failed)
        });
        assert_eq!(sup.services[0].tracker.failures(), 3);
        assert_eq!(sup.services[0].last.lock().unwrap().best(), Some("boom"));
    }

    #[test]
    fn services_start_with_an_empty_signal_mask() {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(Signal::SIGTERM);
        set.thread_block().unwrap();
        let (tx, rx) = events::channel().unwrap();
        let svc = spec("mask", "/bin/grep", &["SigBlk", "/proc/self/status"], 1);
        let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| {
            matches!(s.services[0].phase, Phase::Failed)
        });
        set.thread_unblock().unwrap();
        let last = sup.services[0].last.lock().unwrap();
        assert_eq!(last.any.as_deref(), Some("SigBlk:\t0000000000000000"));
    }

    #[test]
    fn missing_executable_is_a_failure() {
        let (tx, rx) = events::channel().unwrap();
        let svc = spec("ghost", "/nonexistent/berth-ghost", &[], 2);
        let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| {
            matches!(s.services[0].phase, Phase::Failed)
        });
        let last = sup.services[0].last.lock().unwrap();
        assert!(last
            .best()
            .unwrap()
            .starts_with("cannot execute /nonexistent/berth-ghost:"));
    }

    #[test]
    fn shutdown_stops_restarts() {
        let (tx, rx) = events::channel().unwrap();
        let svc = spec("sleeper", "/bin/sleep", &["30"], 3);
        let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| s.any_running());
        let pids = sup.begin_shutdown();
        assert_eq!(pids.len(), 1);
        kill_run(pids[0], Signal::SIGTERM);
        drive(&mut sup, &rx, &pids, |s| {
            !s.any_running() && matches!(s.services[0].phase, Phase::Stopped)
        });
        sup.tick(Instant::now() + Duration::from_secs(60));
        assert!(!sup.any_running());
    }

    #[test]
    fn restart_policies() {
        let mut never = Tracker::new(5, B).with_policy(RestartPolicy::Never);
        assert_eq!(never.on_exit(true, false, false), Decision::Done);
        assert_eq!(never.on_exit(false, false, true), Decision::Done);
        let mut on_failure = Tracker::new(5, B).with_policy(RestartPolicy::OnFailure);
        assert_eq!(on_failure.on_exit(true, false, true), Decision::Done);
        assert_eq!(
            on_failure.on_exit(true, false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 1
            }
        );
        assert_eq!(
            on_failure.on_exit(false, false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 0
            }
        );
        let policy: RestartPolicy = toml::from_str::<toml::Table>("p = \"on-failure\"").unwrap()
            ["p"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(policy, RestartPolicy::OnFailure);
    }

    #[test]
    fn nothing_starts_before_the_engine_stage() {
        let (tx, _rx) = events::channel().unwrap();
        let mut sup = Supervisor::new(
            vec![spec("early", "/bin/true", &[], 1)],
            Console::new(console::Level::Error),
            tx,
        );
        sup.tick(Instant::now() + Duration::from_secs(60));
        assert!(!sup.any_running());
        assert_eq!(sup.status()[0].state, ServiceState::Pending);
        assert_eq!(sup.next_deadline(), None);
    }

    #[test]
    fn a_clean_exit_of_an_on_failure_service_is_final() {
        let (tx, rx) = events::channel().unwrap();
        let mut svc = spec("oneshot", "/bin/true", &[], 3);
        svc.restart = RestartPolicy::OnFailure;
        let mut sup = Supervisor::new(vec![svc], Console::new(console::Level::Error), tx);
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| {
            matches!(s.services[0].phase, Phase::Done)
        });
        let st = &sup.status()[0];
        assert_eq!(
            (st.state, st.restarts, st.pid),
            (ServiceState::Exited, 0, None)
        );
        assert_eq!(
            st.last_exit,
            Some(ExitStatus {
                code: 0,
                signal: None
            })
        );
    }

    #[test]
    fn duplicate_names_are_refused() {
        let (tx, _rx) = events::channel().unwrap();
        let specs = vec![
            spec("a", "/bin/true", &[], 1),
            spec("a", "/bin/false", &[], 1),
        ];
        let sup = Supervisor::new(specs, Console::new(console::Level::Error), tx);
        assert_eq!(sup.status().len(), 1);
    }

    #[test]
    fn control_reports_status_and_restarts_on_request() {
        let (tx, rx) = events::channel().unwrap();
        let mut sup = Supervisor::new(
            vec![spec("sleeper", "/bin/sleep", &["30"], 3)],
            Console::new(console::Level::Error),
            tx,
        );
        let control = sup.control();
        assert_eq!(control.status()[0].state, ServiceState::Pending);
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| s.any_running());
        let first = control.status()[0].clone();
        assert_eq!(
            (first.name.as_str(), first.state, first.restarts),
            ("sleeper", ServiceState::Running, 0)
        );
        let old = first.pid.unwrap();
        // The request waits for the main loop: answer it from here, as the main loop would.
        let asker = std::thread::spawn(move || {
            let unknown = control.restart("nope", Duration::from_secs(5));
            let ok = control.restart("sleeper", Duration::from_secs(5));
            (unknown, ok, control)
        });
        let mut answered = 0;
        let guard = Instant::now() + Duration::from_secs(5);
        while answered < 2 && Instant::now() < guard {
            for ev in rx.drain() {
                if matches!(ev, Event::Restart { .. }) {
                    answered += 1;
                }
                sup.handle(ev, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (unknown, ok, control) = asker.join().unwrap();
        assert_eq!(unknown, Err(ControlError::UnknownService("nope".into())));
        assert_eq!(ok, Ok(()));
        drive(&mut sup, &rx, &[Pid::from_raw(old)], |s| {
            s.status()[0].state == ServiceState::Running && s.status()[0].pid != Some(old)
        });
        let now = control.status()[0].clone();
        assert_eq!(now.restarts, 1);
        assert_eq!(
            now.last_exit,
            Some(ExitStatus {
                code: 143,
                signal: Some(Signal::SIGTERM)
            })
        );
        let pids = sup.begin_shutdown();
        kill_run(pids[0], Signal::SIGKILL);
        drive(&mut sup, &rx, &pids, |s| !s.any_running());
    }

    #[test]
    fn stop_all_kills_a_service_that_ignores_sigterm_after_its_timeout() {
        let (tx, rx) = events::channel().unwrap();
        let mut stubborn = spec(
            "stubborn",
            "/bin/sh",
            &["-c", "trap '' TERM; echo up; while :; do sleep 1; done"],
            1,
        );
        stubborn.stop_timeout = Duration::from_millis(500);
        let polite = spec("polite", "/bin/sleep", &["30"], 1);
        let mut sup = Supervisor::new(
            vec![stubborn, polite],
            Console::new(console::Level::Error),
            tx,
        );
        sup.start(Instant::now());
        drive(&mut sup, &rx, &[], |s| {
            s.services
                .iter()
                .all(|s| matches!(s.phase, Phase::Running { .. }))
                && s.services[0].last.lock().unwrap().any.is_some()
        });
        let pids: Vec<Pid> = sup
            .status()
            .iter()
            .filter_map(|s| s.pid)
            .map(Pid::from_raw)
            .collect();
        let started = Instant::now();
        let mut reap = || {
            pids.iter()
                .filter_map(|p| {
                    nix::sys::wait::waitpid(*p, Some(nix::sys::wait::WaitPidFlag::WNOHANG)).ok()
                })
                .filter_map(ExitStatus::from_wait)
                .collect()
        };
        sup.stop_all(&mut reap);
        let took = started.elapsed();
        println!("stop_all took {:.3}s", took.as_secs_f64());
        assert!(!sup.any_running());
        let st = sup.status();
        assert_eq!(
            st[0].last_exit.map(|e| e.signal),
            Some(Some(Signal::SIGKILL)),
            "{st:?}"
        );
        assert_eq!(
            st[1].last_exit.map(|e| e.signal),
            Some(Some(Signal::SIGTERM)),
            "{st:?}"
        );
        assert!(
            st.iter().all(|s| s.state == ServiceState::Stopped),
            "{st:?}"
        );
        assert!(took < Duration::from_secs(10), "hang guard: {took:?}");
        // The sleep the stubborn shell was running is its orphan now; its process group was
        // killed too.
        for ev in rx.drain() {
            sup.handle(ev, Instant::now());
        }
    }
}
