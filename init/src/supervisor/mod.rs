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
//! Split along its concerns:
//! - [`policy`]: the restart policy and back-off ([`Backoff`], [`Tracker`]), pure and
//!   unit-tested;
//! - [`process`]: starting a run (environment, signal mask, cgroup), forwarding its output,
//!   checking readiness, signalling it;
//! - this module: the service table ([`Supervisor`], one `service` row per service) that
//!   drives both from the main loop's events and prints the console lines;
//! - [`spec`] (what to run) and [`control`] (the handle other threads use).

pub mod control;
pub mod policy;
pub mod process;
mod service;
pub mod spec;
#[cfg(test)]
mod tests;

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

pub use control::{Control, ControlError, Event, ServiceState, ServiceStatus};
pub use policy::{Backoff, Decision, RestartPolicy, Tracker, EXIT_CONFIG, QUICK_EXIT};
pub use process::{kill_run, ReadyError};
use service::{Phase, Service};
pub use spec::{Readiness, ServiceSpec};

use crate::cgroup::{self, Tree};
use crate::console::{self, Console};
use crate::events;
use crate::output::LastLines;
use crate::reaper::ExitStatus;

/// How long to wait, after a service exited, for the rest of its output before deciding
/// what to do (so its last words appear before init's verdict).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How long a killed cgroup may take to empty before init gives up waiting for it.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Runs and watches the services. Owned by the main loop.
#[derive(Debug)]
pub struct Supervisor {
    services: Vec<Service>,
    console: Console,
    events: events::Sender<Event>,
    cgroups: Option<Tree>,
    status: Arc<Mutex<Vec<ServiceStatus>>>,
    announced: bool,
    /// [`Supervisor::start`] was called: services added later start at once.
    started: bool,
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
            services.push(Service::new(spec, Phase::Pending));
        }
        let supervisor = Self {
            services,
            console,
            events,
            cgroups: None,
            status: Arc::default(),
            announced: false,
            started: false,
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
        self.started = true;
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
            // The main loop's (stage 2 takes it before the supervisor sees events).
            Event::Reload { .. } => {}
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
            Phase::Off => return Err(ControlError::Off(name.to_string())),
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
        if std::mem::take(&mut svc.off_requested) {
            self.console.notice(&format!(
                "{} (pid {pid}) stopped after {:.1}s: {status}; off",
                svc.spec.name,
                ran.as_secs_f64()
            ));
            svc.restart_requested = false;
            svc.enter(Phase::Off);
            return;
        }
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
        // EX_CONFIG before readiness, or (services ready as soon as they run) in a quick exit:
        // restarting cannot fix a file.
        let bad_config =
            (!ready || failure) && status.signal.is_none() && status.code == EXIT_CONFIG;
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
        let cgroup = self.prepare_cgroup(i);
        let svc = &mut self.services[i];
        svc.spawns += 1;
        if let Ok(mut last) = svc.last.lock() {
            *last = LastLines::default();
        }
        let procs_fd = cgroup.as_ref().map(|cg| cg.procs.as_raw_fd());
        let spawned = process::command(&svc.spec, procs_fd).spawn();
        // The child has joined the cgroup (or failed to start): cgroup.procs can close.
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
        let open_pipes = process::forward_output(
            &mut child,
            i,
            &svc.spec.name,
            &svc.last,
            console,
            &self.events,
        );
        // The child is reaped by the main loop's waitpid(-1); dropping the handle is fine.
        drop(child);
        let ready =
            process::watch_readiness(&svc.spec.readiness, i, pid, &svc.current, &self.events);
        svc.enter(Phase::Running {
            pid,
            started: now,
            ready,
            open_pipes,
            stop: None,
        });
    }

    /// Adds `spec` as a new service (started at once when the engine stage has begun), or
    /// gives the service of that name this spec for its next start; a service that is off,
    /// failed or done starts again. A running one keeps running: restart it to apply a new
    /// spec ([`Supervisor::restart`]).
    pub fn upsert(&mut self, spec: ServiceSpec, now: Instant) {
        if self.shutting_down {
            return;
        }
        let started = self.started;
        match self.services.iter_mut().find(|s| s.spec.name == spec.name) {
            Some(svc) => {
                svc.tracker =
                    Tracker::new(spec.max_failures, spec.backoff).with_policy(spec.restart);
                svc.spec = spec;
                svc.off_requested = false;
                if matches!(svc.phase, Phase::Off | Phase::Failed | Phase::Done) {
                    svc.enter(Phase::Waiting { until: now });
                }
            }
            None => {
                let phase = if started {
                    Phase::Waiting { until: now }
                } else {
                    Phase::Pending
                };
                self.services.push(Service::new(spec, phase));
            }
        }
        self.publish();
    }

    /// Stops service `name` (SIGTERM, SIGKILL after its stop timeout) and keeps it off until
    /// [`Supervisor::upsert`]. Returns whether such a service exists.
    pub fn turn_off(&mut self, name: &str, now: Instant) -> bool {
        let Some(svc) = self.services.iter_mut().find(|s| s.spec.name == name) else {
            return false;
        };
        match svc.phase {
            Phase::Running { pid, stop, .. } => {
                svc.off_requested = true;
                if stop.is_none() {
                    svc.signal(pid, Signal::SIGTERM);
                    let deadline = now + svc.spec.stop_timeout;
                    if let Phase::Running { stop, .. } = &mut svc.phase {
                        *stop = Some(deadline);
                    }
                }
            }
            Phase::Exited { .. } => svc.off_requested = true,
            Phase::Stopped | Phase::Off => {}
            _ => svc.enter(Phase::Off),
        }
        self.publish();
        true
    }

    /// Restarts service `name` as [`Control::restart`] does.
    pub fn restart(&mut self, name: &str, now: Instant) -> Result<(), ControlError> {
        let r = self.request_restart(name, now);
        self.publish();
        r
    }

    /// Whether service `name` has a running process.
    pub fn is_running(&self, name: &str) -> bool {
        self.services
            .iter()
            .any(|s| s.spec.name == name && matches!(s.phase, Phase::Running { .. }))
    }

    /// Sends `signal` to the main process of service `name` (a reload: SIGHUP); returns
    /// whether it runs.
    pub fn signal(&self, name: &str, signal: Signal) -> bool {
        for svc in self.services.iter().filter(|s| s.spec.name == name) {
            if let Phase::Running {
                pid, stop: None, ..
            } = svc.phase
            {
                let _ = nix::sys::signal::kill(pid, signal);
                return true;
            }
        }
        false
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
                Phase::Failed | Phase::Done | Phase::Stopped | Phase::Off => {}
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
