//! Service supervision: start berthd and the extra `[[service]]`s, forward their output,
//! check readiness, restart with exponential back-off, give up after repeated failures.
//!
//! A *failure* is an exit before the service became ready, or any exit within
//! [`QUICK_EXIT`] of its start. After `max_failures` failures in a row init gives up on the
//! service and says why on one line (with the last line the service wrote); the node stays
//! up. A service that ran fine for a while and then died is restarted after the initial
//! delay, and its failure count starts over.
//!
//! The policy ([`Backoff`], [`Tracker`]) is pure and unit-tested; [`Supervisor`] adds
//! processes, threads and console lines around it.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::console::{self, Console};
use crate::events;
use crate::output::{self, LastLines, Stream};
use crate::reaper::ExitStatus;

/// An exit this soon after the start counts as a failure even if the service was ready.
pub const QUICK_EXIT: Duration = Duration::from_secs(10);

/// How long to wait, after a service exited, for the rest of its output before deciding
/// what to do (so its last words appear before init's verdict).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// `PATH` services start with.
const SERVICE_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

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
}

/// The exit code with which a service reports an invalid configuration (sysexits' EX_CONFIG),
/// as berthd does.
pub const EXIT_CONFIG: i32 = 78;

/// The restart policy state of one service.
#[derive(Debug, Clone)]
pub struct Tracker {
    max_failures: u32,
    backoff: Backoff,
    failures: u32,
}

impl Tracker {
    /// A tracker giving up after `max_failures` (at least 1) failures in a row.
    pub fn new(max_failures: u32, backoff: Backoff) -> Self {
        Self {
            max_failures: max_failures.max(1),
            backoff,
            failures: 0,
        }
    }

    /// Whether an exit counts as a failure.
    pub fn is_failure(was_ready: bool, ran: Duration) -> bool {
        !was_ready || ran < QUICK_EXIT
    }

    /// Records an exit (or a failed spawn, `failure = true`) and decides. `bad_config`: the
    /// service exited with [`EXIT_CONFIG`] before it was ready.
    pub fn on_exit(&mut self, failure: bool, bad_config: bool) -> Decision {
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

    /// The configured limit.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }
}

/// How init decides a service is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// berthd: a Version call on `address` answered. The first time, init prints
    /// `berth ready`.
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
    /// Console and message name.
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
}

/// Messages from the supervisor's helper threads to the main loop.
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
}

/// Why a readiness check gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyError {
    /// No answer within the timeout; the last client error.
    Timeout(Duration, String),
    /// The client code panicked (reported once; the service keeps running).
    Panicked,
}

#[derive(Debug)]
enum Phase {
    /// Start at `until`.
    Waiting { until: Instant },
    /// Running.
    Running {
        pid: Pid,
        started: Instant,
        ready: bool,
        open_pipes: u8,
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
}

/// Runs and watches the services. Owned by the main loop.
#[derive(Debug)]
pub struct Supervisor {
    services: Vec<Service>,
    console: Console,
    events: events::Sender<Event>,
    announced: bool,
    shutting_down: bool,
}

impl Supervisor {
    /// A supervisor that starts every service on the first [`Supervisor::tick`].
    pub fn new(specs: Vec<ServiceSpec>, console: Console, events: events::Sender<Event>) -> Self {
        let now = Instant::now();
        let services = specs
            .into_iter()
            .map(|spec| Service {
                tracker: Tracker::new(spec.max_failures, spec.backoff),
                spec,
                phase: Phase::Waiting { until: now },
                last: Arc::default(),
                current: Arc::default(),
                ever_ready: false,
            })
            .collect();
        Self {
            services,
            console,
            events,
            announced: false,
            shutting_down: false,
        }
    }

    /// Starts due services and settles exits whose output grace ran out.
    pub fn tick(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        for i in 0..self.services.len() {
            match self.services[i].phase {
                Phase::Waiting { until } if until <= now => self.spawn(i, now),
                Phase::Exited { deadline, .. } if deadline <= now => self.settle(i, now),
                _ => {}
            }
        }
    }

    /// When [`Supervisor::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.services
            .iter()
            .filter_map(|s| match s.phase {
                Phase::Waiting { until } => Some(until),
                Phase::Exited { deadline, .. } => Some(deadline),
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
        }
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
                kill_run(*p, Signal::SIGKILL);
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
    pub fn on_exit(&mut self, pid: Pid, status: ExitStatus, now: Instant) -> bool {
        let Some(i) = self
            .services
            .iter()
            .position(|s| matches!(s.phase, Phase::Running { pid: p, .. } if p == pid))
        else {
            return false;
        };
        let svc = &mut self.services[i];
        svc.current.store(0, Ordering::SeqCst);
        if let Phase::Running {
            started,
            ready,
            open_pipes,
            ..
        } = svc.phase
        {
            svc.phase = Phase::Exited {
                pid,
                started,
                ready,
                open_pipes,
                deadline: now + OUTPUT_GRACE,
                status,
            };
            if open_pipes == 0 {
                self.settle(i, now);
            }
        }
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
            svc.phase = Phase::Stopped;
            return;
        }
        let ran = now.saturating_duration_since(started);
        let failure = Tracker::is_failure(ready, ran);
        let reason = status.to_string();
        let bad_config = !ready && status.signal.is_none() && status.code == EXIT_CONFIG;
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
        self.decide(i, failure, bad_config, what, reason, now);
    }

    fn decide(
        &mut self,
        i: usize,
        failure: bool,
        bad_config: bool,
        what: String,
        reason: String,
        now: Instant,
    ) {
        let console = self.console;
        let svc = &mut self.services[i];
        match svc.tracker.on_exit(failure, bad_config) {
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
                svc.phase = Phase::Waiting { until: now + delay };
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
                svc.phase = Phase::Failed;
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
                svc.phase = Phase::Failed;
            }
        }
    }

    fn spawn(&mut self, i: usize, now: Instant) {
        let console = self.console;
        let events = self.events.clone();
        let svc = &mut self.services[i];
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
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (sigemptyset, pthread_sigmask) on a local set.
        unsafe {
            command.pre_exec(|| {
                // std does not reset the mask: the child would inherit init's blocked
                // SIGTERM/SIGINT/SIGCHLD and never see them.
                let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
                libc::sigemptyset(set.as_mut_ptr());
                libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                let reason = format!("cannot execute {}: {err}", svc.spec.path.display());
                if let Ok(mut last) = svc.last.lock() {
                    last.stderr = Some(reason.clone());
                }
                let what = format!("{}: {reason}", svc.spec.name);
                self.decide(i, true, false, what, reason, now);
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
        svc.phase = Phase::Running {
            pid,
            started: now,
            ready,
            open_pipes,
        };
    }

    /// Stops restarting and returns the process ids of the running services.
    pub fn begin_shutdown(&mut self) -> Vec<Pid> {
        self.shutting_down = true;
        let mut pids = Vec::new();
        for svc in &mut self.services {
            svc.current.store(0, Ordering::SeqCst);
            match svc.phase {
                Phase::Running { pid, .. } => pids.push(pid),
                Phase::Waiting { .. } | Phase::Exited { .. } => svc.phase = Phase::Stopped,
                Phase::Failed | Phase::Stopped => {}
            }
        }
        pids
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
                berth_runtime::client::version_blocking(address, Duration::from_secs(2))
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
            t.on_exit(true, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 1
            }
        );
        assert_eq!(
            t.on_exit(true, false),
            Decision::Restart {
                delay: Duration::from_millis(400),
                failures: 2
            }
        );
        assert_eq!(t.on_exit(true, false), Decision::GiveUp { failures: 3 });
    }

    #[test]
    fn a_good_run_resets_the_count() {
        let mut t = Tracker::new(2, B);
        assert!(matches!(
            t.on_exit(true, false),
            Decision::Restart { failures: 1, .. }
        ));
        assert_eq!(
            t.on_exit(false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 0
            }
        );
        assert!(matches!(
            t.on_exit(true, false),
            Decision::Restart { failures: 1, .. }
        ));
        assert_eq!(t.failures(), 1);
    }

    #[test]
    fn zero_max_failures_means_one() {
        let mut t = Tracker::new(0, B);
        assert_eq!(t.on_exit(true, false), Decision::GiveUp { failures: 1 });
    }

    #[test]
    fn invalid_configuration_gives_up_at_once() {
        let mut t = Tracker::new(5, B);
        assert_eq!(t.on_exit(true, true), Decision::GiveUpConfig);
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
}
