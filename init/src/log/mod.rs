//! init's log: one in-memory ring of records fed by `/dev/log` (RFC 3164 and 5424),
//! `/dev/kmsg`, the output of supervised services and init's own messages, with an optional
//! rotated file under `/var/log` and optional forwarding to a remote syslog server.
//!
//! Threads, not async: each input and each output has its own small thread. Inputs call
//! [`Logger::push`], which only takes a mutex for a moment, so nothing an input or a slow
//! network does can block init's main loop. Outputs (file, forwarder, `berthctl system log
//! -f`) are readers with a cursor (a sequence number) into the ring: when they fall behind by
//! more than the ring holds, the oldest records are dropped for them and counted. The ring
//! is the bounded queue; there is no second copy of the data.
//!
//! See `docs/logging.md` for the operator's view.

pub mod config;
pub mod file;
pub mod forward;
pub mod kmsg;
pub mod ratelimit;
pub mod record;
pub mod ring;
pub mod syslog;

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

pub use config::LogConfig;
pub use record::{Facility, Filter, Origin, Record, Severity};
use ring::{Batch, Ring};

use crate::console::{Console, Level};

/// The shared log: the ring plus wake-ups for its readers.
pub struct Logger {
    ring: Mutex<Ring>,
    /// Blocking readers (file, forwarder) wait here for new records.
    grew: Condvar,
    /// Async readers (the control API's follow) wait here; carries the next sequence number.
    watch: tokio::sync::watch::Sender<u64>,
    /// Uptime of init's `berth ready` milestone, the end of boot.
    ready_at: OnceLock<Duration>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger").finish_non_exhaustive()
    }
}

/// The milestone line the supervisor prints when berthd first answers (see init/README.md);
/// its time is boot-to-ready.
pub const READY_PREFIX: &str = "berth ready";

impl Logger {
    /// A log whose ring holds `ring_bytes`.
    pub fn new(ring_bytes: usize) -> Self {
        Self {
            ring: Mutex::new(Ring::new(ring_bytes)),
            grew: Condvar::new(),
            watch: tokio::sync::watch::Sender::new(0),
            ready_at: OnceLock::new(),
        }
    }

    /// A log for the lifetime of PID 1 (leaked: init never exits), sized by `config` (an
    /// invalid size is replaced by the default here and reported by [`start_outputs`]).
    pub fn install(config: &LogConfig) -> &'static Logger {
        let (config, _, _) = config.validated();
        Box::leak(Box::new(Self::new(
            usize::try_from(config.ring_bytes).unwrap_or(usize::MAX),
        )))
    }

    /// Changes the ring's byte budget (dropping the oldest records if it shrinks).
    pub fn resize(&self, ring_bytes: usize) {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_capacity(ring_bytes);
    }

    /// Appends `record` and wakes the readers; returns its sequence number.
    pub fn push(&self, record: Record) -> u64 {
        if record.origin == Origin::Init
            && self.ready_at.get().is_none()
            && record.message.starts_with(READY_PREFIX)
        {
            let _ = self.ready_at.set(record.uptime);
        }
        let seq = {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            ring.push(record)
        };
        self.grew.notify_all();
        self.watch.send_replace(seq + 1);
        seq
    }

    /// Records one of init's own messages.
    pub fn init_message(&self, level: Level, message: &str) {
        let severity = match level {
            Level::Error => Severity::Err,
            Level::Warn => Severity::Warning,
            Level::Info => Severity::Info,
            Level::Debug => Severity::Debug,
        };
        self.push(Record::now(
            Origin::Init,
            Facility::DAEMON,
            severity,
            crate::console::INIT,
            message,
        ));
    }

    /// Records an init milestone (`berth ready`, shutting down).
    pub fn init_notice(&self, message: &str) {
        self.push(Record::now(
            Origin::Init,
            Facility::DAEMON,
            Severity::Notice,
            crate::console::INIT,
            message,
        ));
    }

    /// Records one line of a service's output, its severity guessed from the line.
    pub fn service_line(&self, service: &str, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.push(Record::now(
            Origin::Service,
            Facility::DAEMON,
            line_severity(line),
            service,
            line,
        ));
    }

    /// Matching records from sequence number `from`, at most `limit`.
    pub fn read_from(&self, from: u64, filter: &Filter, limit: usize) -> Batch {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_from(from, filter, limit)
    }

    /// The last `n` matching records and the sequence number after the newest record.
    pub fn tail(&self, n: usize, filter: &Filter) -> (Vec<Record>, u64) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        (ring.tail(n, filter), ring.next_seq())
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .next_seq()
    }

    /// The sequence number of the oldest record still held.
    pub fn first_seq(&self) -> u64 {
        self.ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first_seq()
    }

    /// (bytes held, records dropped because the ring was full).
    pub fn usage(&self) -> (usize, u64) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        (ring.bytes(), ring.dropped())
    }

    /// Blocks until a record with sequence number `>= seq` exists or `timeout` passes;
    /// returns whether one does.
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (ring, _) = self
            .grew
            .wait_timeout_while(ring, timeout, |r| r.next_seq() <= seq)
            .unwrap_or_else(|e| e.into_inner());
        ring.next_seq() > seq
    }

    /// A receiver that changes whenever a record is added (value: next sequence number).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch.subscribe()
    }

    /// Uptime at `berth ready`, once it happened.
    pub fn ready_at(&self) -> Option<Duration> {
        self.ready_at.get().copied()
    }
}

/// Severity of a service's output line: a leading level word as `tracing` (`ERROR`, ` WARN`,
/// …) or `name: error:`-style tools print it, else info.
pub fn line_severity(line: &str) -> Severity {
    let word: String = line
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match word.as_str() {
        "error" | "err" | "fatal" | "panic" => Severity::Err,
        "warn" | "warning" => Severity::Warning,
        "debug" | "trace" => Severity::Debug,
        _ => Severity::Info,
    }
}

/// The console level at which a record of `severity` is shown.
pub fn console_level(severity: Severity) -> Level {
    match severity {
        Severity::Emerg | Severity::Alert | Severity::Crit | Severity::Err => Level::Error,
        Severity::Warning => Level::Warn,
        Severity::Notice | Severity::Info => Level::Info,
        Severity::Debug => Level::Debug,
    }
}

/// Starts the inputs, `/dev/log` and `/dev/kmsg`, each on its own thread, as early as
/// possible. An input that cannot start is reported and the other still starts.
pub fn start_inputs(logger: &'static Logger, console: Console) {
    match syslog::Receiver::bind(std::path::Path::new(syslog::DEV_LOG)) {
        Ok(receiver) => spawn("syslog", console, move || receiver.run(logger, console)),
        Err(err) => console.warn(&format!("syslog: {err}")),
    }
    match kmsg::open(std::path::Path::new(kmsg::DEV_KMSG)) {
        Ok(file) => spawn("kmsg", console, move || kmsg::run(file, logger, console)),
        Err(err) => console.warn(&format!("kmsg: {err}")),
    }
}

/// Validates `config` (one console error per bad key, naming it), sizes the ring and starts
/// the configured outputs (file, forwarding). Called once the final configuration is known
/// (after the node file on the state disk, which may name a per-node syslog server); the
/// outputs start with everything the ring holds, so nothing from earlier in boot is lost.
pub fn start_outputs(config: &LogConfig, logger: &'static Logger, console: Console) {
    let (config, target, errors) = config.validated();
    for err in errors {
        console.error(&err.to_string());
    }
    logger.resize(usize::try_from(config.ring_bytes).unwrap_or(usize::MAX));
    if !config.file.path.is_empty() {
        let writer = file::Writer::new(config.file.clone());
        spawn("log-file", console, move || writer.run(logger, console));
    }
    if let Some(target) = target {
        let min = config.forward.min_severity;
        spawn("log-forward", console, move || {
            forward::run(target, min, logger, console)
        });
    }
}

fn spawn(name: &str, console: Console, f: impl FnOnce() + Send + 'static) {
    if let Err(err) = std::thread::Builder::new()
        .name(name.into())
        .stack_size(128 * 1024)
        .spawn(f)
    {
        console.warn(&format!("{name}: cannot start its thread: {err}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_line_severity_is_guessed() {
        assert_eq!(line_severity(" WARN berthd serving"), Severity::Warning);
        assert_eq!(line_severity("ERROR cannot bind"), Severity::Err);
        assert_eq!(
            line_severity("error: /etc/berth/berthd.toml:17: bad"),
            Severity::Err
        );
        assert_eq!(line_severity("DEBUG x"), Severity::Debug);
        assert_eq!(line_severity(" INFO berthd serving"), Severity::Info);
        assert_eq!(line_severity("errors happen"), Severity::Info);
    }

    #[test]
    fn push_wakes_waiters_and_records_ready() {
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 16)));
        let mut rx = logger.subscribe();
        let t = std::thread::spawn(move || logger.wait_for(0, Duration::from_secs(30)));
        logger.init_notice("berth ready (berthd 0.1.0, uptime 3.18s)");
        assert!(t.join().unwrap());
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert!(logger.ready_at().is_some());
        assert!(!logger.wait_for(1, Duration::from_millis(10)));
    }
}
