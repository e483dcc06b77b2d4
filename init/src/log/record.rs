//! One log record and its syslog vocabulary (facility, severity), shared by every input
//! (`/dev/log`, `/dev/kmsg`, service output, init itself) and every output (ring, file,
//! forwarding, the control API).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Syslog severity (RFC 5424 section 6.2.1): lower is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// System is unusable.
    Emerg = 0,
    /// Action must be taken immediately.
    Alert = 1,
    /// Critical conditions.
    Crit = 2,
    /// Error conditions.
    #[serde(alias = "error")]
    Err = 3,
    /// Warning conditions.
    #[serde(alias = "warn")]
    Warning = 4,
    /// Normal but significant condition.
    Notice = 5,
    /// Informational.
    Info = 6,
    /// Debug-level messages.
    Debug = 7,
}

impl Severity {
    /// All severities, most severe first.
    pub const ALL: [Severity; 8] = [
        Self::Emerg,
        Self::Alert,
        Self::Crit,
        Self::Err,
        Self::Warning,
        Self::Notice,
        Self::Info,
        Self::Debug,
    ];

    /// The severity with wire code `code` (0..=7).
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The wire code (0..=7).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The lowercase keyword (`err`, `warning`, …) as syslog tools print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Emerg => "emerg",
            Self::Alert => "alert",
            Self::Crit => "crit",
            Self::Err => "err",
            Self::Warning => "warning",
            Self::Notice => "notice",
            Self::Info => "info",
            Self::Debug => "debug",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    /// Accepts the keywords and the aliases `error`, `warn`, and the codes `0`..`7`.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        if let Ok(code) = lower.parse::<u8>() {
            return Self::from_code(code).ok_or_else(|| format!("severity {s:?}: expected 0..7"));
        }
        match lower.as_str() {
            "error" => Ok(Self::Err),
            "warn" => Ok(Self::Warning),
            other => Self::ALL.into_iter().find(|sev| sev.as_str() == other).ok_or_else(|| {
                format!("severity {s:?}: expected one of emerg, alert, crit, err, warning, notice, info, debug")
            }),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Syslog facility code (RFC 5424 section 6.2.1), 0..=23.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Facility(u8);

const FACILITY_NAMES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl Facility {
    /// Kernel messages.
    pub const KERN: Facility = Facility(0);
    /// User-level messages (the default of `syslog(3)` and of a datagram without PRI).
    pub const USER: Facility = Facility(1);
    /// System daemons: init and the services it supervises.
    pub const DAEMON: Facility = Facility(3);

    /// The facility with code `code`, if valid (0..=23).
    pub fn from_code(code: u8) -> Option<Self> {
        (usize::from(code) < FACILITY_NAMES.len()).then_some(Self(code))
    }

    /// The code.
    pub fn code(self) -> u8 {
        self.0
    }

    /// The name (`kern`, `daemon`, `local0`, …).
    pub fn as_str(self) -> &'static str {
        FACILITY_NAMES[usize::from(self.0)]
    }
}

impl std::fmt::Display for Facility {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The kernel's log (`/dev/kmsg`).
    Kmsg,
    /// A datagram on `/dev/log`.
    Syslog,
    /// A line a supervised service wrote to stdout or stderr.
    Service,
    /// berth-init itself.
    Init,
}

impl Origin {
    /// The lowercase name used in filters and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kmsg => "kmsg",
            Self::Syslog => "syslog",
            Self::Service => "service",
            Self::Init => "init",
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Position in the log, from 0, without gaps: readers resume from a sequence number and
    /// learn how many records they missed when the ring dropped some.
    pub seq: u64,
    /// Wall-clock time (may jump when the clock is stepped at boot).
    pub time: SystemTime,
    /// Time since boot (`CLOCK_BOOTTIME`), comparable with console and kernel timestamps.
    pub uptime: Duration,
    /// Syslog facility.
    pub facility: Facility,
    /// Syslog severity.
    pub severity: Severity,
    /// The input it came from.
    pub origin: Origin,
    /// The application (syslog APP-NAME or tag), service name, `kernel` or `berth-init`.
    pub name: String,
    /// The sender's process id, when known.
    pub pid: Option<u32>,
    /// The text, one line.
    pub message: String,
}

impl Record {
    /// A record from `origin` stamped now; `seq` is set by the log.
    pub fn now(
        origin: Origin,
        facility: Facility,
        severity: Severity,
        name: &str,
        message: &str,
    ) -> Self {
        Self {
            seq: 0,
            time: SystemTime::now(),
            uptime: crate::console::uptime(),
            facility,
            severity,
            origin,
            name: name.to_string(),
            pid: None,
            message: message.to_string(),
        }
    }

    /// Approximate memory held by this record, the unit of the ring's byte budget.
    pub fn cost(&self) -> usize {
        // The struct itself plus the two heap strings.
        std::mem::size_of::<Self>() + self.name.len() + self.message.len()
    }
}

/// Which records a reader wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Records at most this severe are skipped: keep `severity <= min_severity`.
    pub min_severity: Severity,
    /// Keep only records whose origin (`kmsg`, `syslog`, `service`, `init`) or name equals
    /// this; `None` keeps all.
    pub source: Option<String>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            min_severity: Severity::Debug,
            source: None,
        }
    }
}

impl Filter {
    /// Whether `record` passes.
    pub fn matches(&self, record: &Record) -> bool {
        record.severity <= self.min_severity
            && self
                .source
                .as_deref()
                .is_none_or(|s| s == record.origin.as_str() || s == record.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_parses_names_aliases_and_codes() {
        assert_eq!("warning".parse::<Severity>().unwrap(), Severity::Warning);
        assert_eq!("WARN".parse::<Severity>().unwrap(), Severity::Warning);
        assert_eq!("error".parse::<Severity>().unwrap(), Severity::Err);
        assert_eq!("3".parse::<Severity>().unwrap(), Severity::Err);
        assert!("8".parse::<Severity>().unwrap_err().contains("0..7"));
        assert!("loud"
            .parse::<Severity>()
            .unwrap_err()
            .contains("expected one of"));
        assert!(Severity::Err < Severity::Warning);
    }

    #[test]
    fn facility_names() {
        assert_eq!(Facility::from_code(16).unwrap().as_str(), "local0");
        assert_eq!(Facility::DAEMON.to_string(), "daemon");
        assert!(Facility::from_code(24).is_none());
    }

    #[test]
    fn filter_by_severity_and_source() {
        let r = Record::now(
            Origin::Service,
            Facility::DAEMON,
            Severity::Warning,
            "berthd",
            "x",
        );
        assert!(Filter::default().matches(&r));
        assert!(Filter {
            min_severity: Severity::Warning,
            source: None
        }
        .matches(&r));
        assert!(!Filter {
            min_severity: Severity::Err,
            source: None
        }
        .matches(&r));
        assert!(Filter {
            min_severity: Severity::Debug,
            source: Some("berthd".into())
        }
        .matches(&r));
        assert!(Filter {
            min_severity: Severity::Debug,
            source: Some("service".into())
        }
        .matches(&r));
        assert!(!Filter {
            min_severity: Severity::Debug,
            source: Some("kmsg".into())
        }
        .matches(&r));
    }
}
