//! Console output: one timestamped line per message.
//!
//! Every line init prints looks like `[    1.234567] berth-init: message`, the uptime taken from
//! `CLOCK_BOOTTIME` like the kernel's own printk timestamps, so init's lines interleave
//! readably with the kernel's. Lines forwarded from services use the service name instead of
//! `berth-init`. Each line is written with a single `write(2)` so lines from several threads
//! never mix. The console is a slow serial line under emulation: keep `info` output short.

use std::io::Write;
use std::time::Duration;

/// How much init prints. Ordered: a message is printed when its level is at most the
/// configured one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Only errors.
    Error,
    /// Errors and warnings.
    Warn,
    /// The normal boot narrative (default).
    Info,
    /// Everything, e.g. each mount and module dependency.
    Debug,
}

/// Where init's lines go, and how chatty it is. Cheap to copy; pass it explicitly.
///
/// With a log attached ([`Console::with_log`]), every message (whatever the console level)
/// and every service line also goes into init's log ring (`crate::log`).
#[derive(Debug, Clone, Copy)]
pub struct Console {
    level: Level,
    log: Option<&'static crate::log::Logger>,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            level: Level::Info,
            log: None,
        }
    }
}

/// The source name init uses for its own lines.
pub const INIT: &str = "berth-init";

impl Console {
    /// A console printing messages up to `level`.
    pub fn new(level: Level) -> Self {
        Self { level, log: None }
    }

    /// The same console, also recording into `log`.
    pub fn with_log(self, log: &'static crate::log::Logger) -> Self {
        Self {
            log: Some(log),
            ..self
        }
    }

    /// The configured level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// Prints `message` from init if `level` is enabled. Errors and warnings get an
    /// `error: ` / `warning: ` prefix so they are easy to grep for.
    pub fn log(&self, level: Level, message: &str) {
        if let Some(log) = self.log {
            log.init_message(level, message);
        }
        if level > self.level {
            return;
        }
        let message = match level {
            Level::Error => format!("error: {message}"),
            Level::Warn => format!("warning: {message}"),
            Level::Info | Level::Debug => message.to_string(),
        };
        write_line(&format_line(uptime(), INIT, &message));
    }

    /// Prints a milestone line whatever the level (`berth ready`, shutting down): tests and
    /// operators rely on them.
    pub fn notice(&self, message: &str) {
        write_line(&format_line(uptime(), INIT, message));
        // After the console line: a reader woken by this milestone prints after it.
        if let Some(log) = self.log {
            log.init_notice(message);
        }
    }

    /// Prints an error line (always shown).
    pub fn error(&self, message: &str) {
        self.log(Level::Error, message);
    }

    /// Prints a warning line.
    pub fn warn(&self, message: &str) {
        self.log(Level::Warn, message);
    }

    /// Prints an informational line.
    pub fn info(&self, message: &str) {
        self.log(Level::Info, message);
    }

    /// Prints a debug line.
    pub fn debug(&self, message: &str) {
        self.log(Level::Debug, message);
    }

    /// Forwards one line a service wrote, as `[uptime] <service>: <line>`. Always shown:
    /// services decide themselves how chatty they are.
    pub fn service_line(&self, service: &str, line: &str) {
        if let Some(log) = self.log {
            log.service_line(service, line);
        }
        write_line(&format_line(uptime(), service, line));
    }

    /// Shows a line from another source (a syslog sender) without recording it: its input
    /// has already recorded it.
    pub fn echo(&self, source: &str, line: &str) {
        write_line(&format_line(uptime(), source, line));
    }
}

/// Formats one console line: `[%12.6f] source: message\n`, with control characters (other
/// than tab) in `message` replaced so a service cannot garble the console.
pub fn format_line(uptime: Duration, source: &str, message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect();
    format!(
        "[{:5}.{:06}] {source}: {clean}\n",
        uptime.as_secs(),
        uptime.subsec_micros()
    )
}

/// Time since boot (`CLOCK_BOOTTIME`), the clock the kernel's printk timestamps use.
pub fn uptime() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Duration::new(
            ts.tv_sec().max(0) as u64,
            ts.tv_nsec().clamp(0, 999_999_999) as u32,
        ),
        Err(_) => Duration::ZERO,
    }
}

/// Writes a whole line to stdout (the console for PID 1) in one call, ignoring errors: there
/// is nowhere else to report them.
fn write_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_printk() {
        let line = format_line(Duration::new(1, 234_567_000), INIT, "berth ready");
        assert_eq!(line, "[    1.234567] berth-init: berth ready\n");
        let line = format_line(Duration::new(12345, 5_000), "berthd", "x");
        assert_eq!(line, "[12345.000005] berthd: x\n");
    }

    #[test]
    fn control_characters_are_replaced() {
        let line = format_line(Duration::ZERO, "svc", "a\rb\x1b[31mc\td");
        assert_eq!(line, "[    0.000000] svc: a\u{fffd}b\u{fffd}[31mc\td\n");
    }

    #[test]
    fn levels_are_ordered() {
        assert!(
            Level::Error < Level::Warn && Level::Warn < Level::Info && Level::Info < Level::Debug
        );
    }
}
