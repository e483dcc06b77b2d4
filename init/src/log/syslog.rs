//! The `/dev/log` receiver: a unix datagram socket, one message per datagram, parsed as
//! RFC 5424 or RFC 3164 (glibc's and busybox's `syslog(3)` send the 3164 form without a
//! hostname) with `syslog_loose`. The sender's pid comes from `SCM_CREDENTIALS`, which the
//! kernel fills in and a sender cannot forge.
//!
//! Input is untrusted: a datagram that parses as neither form is kept whole as `user.notice`
//! (RFC 3164 section 4.3.3's default for a message without PRI) and reported with a warning
//! limited per sender; warnings and errors are echoed to the console, also limited per sender,
//! because the serial console is slow and a flood would delay init's own lines.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Datelike;
use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};

use super::ratelimit::{RateLimiter, Verdict};
use super::record::{Facility, Origin, Record, Severity};
use super::{console_level, Logger};
use crate::console::Console;

/// The local syslog socket.
pub const DEV_LOG: &str = "/dev/log";

/// Largest datagram read whole; longer ones are cut (glibc's `syslog(3)` sends at most a few KiB).
pub const MAX_DATAGRAM: usize = 16 * 1024;

/// Errors setting up the receiver.
#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    /// socket/bind/setsockopt failed.
    #[error("cannot listen on {path}: {what}: {source}", path = path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The failing step.
        what: &'static str,
        /// Why.
        #[source]
        source: nix::errno::Errno,
    },
}

/// A message taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Facility (default `user`).
    pub facility: Facility,
    /// Severity (default `notice`).
    pub severity: Severity,
    /// APP-NAME or tag, when present.
    pub app: Option<String>,
    /// PROCID when numeric.
    pub pid: Option<u32>,
    /// The message text.
    pub message: String,
    /// Whether it parsed as syslog at all (false: the whole input is the message).
    pub well_formed: bool,
}

/// Parses one datagram's text.
pub fn parse(text: &str) -> Parsed {
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let year = chrono::Utc::now().year();
    match syslog_loose::parse_message_with_year_exact(text, |_| year, syslog_loose::Variant::Either)
    {
        Ok(msg) => Parsed {
            facility: msg
                .facility
                .and_then(|f| Facility::from_code(f as u8))
                .unwrap_or(Facility::USER),
            severity: msg
                .severity
                .and_then(|s| Severity::from_code(s as u8))
                .unwrap_or(Severity::Notice),
            app: msg
                .appname
                .filter(|a| !a.is_empty() && *a != "-")
                .map(str::to_string),
            pid: match msg.procid {
                Some(syslog_loose::ProcId::PID(pid)) => u32::try_from(pid).ok(),
                _ => None,
            },
            message: one_line(msg.msg),
            well_formed: true,
        },
        Err(_) => Parsed {
            facility: Facility::USER,
            severity: Severity::Notice,
            app: None,
            pid: None,
            message: one_line(text),
            well_formed: false,
        },
    }
}

/// Newlines inside a message become spaces: a record is one line everywhere it goes.
fn one_line(text: &str) -> String {
    text.trim().replace(['\n', '\r'], " ")
}

/// The bound socket.
#[derive(Debug)]
pub struct Receiver {
    fd: OwnedFd,
}

impl Receiver {
    /// Binds `path` (replacing a stale socket file), world-writable like every `/dev/log`, and
    /// asks for the senders' credentials.
    pub fn bind(path: &Path) -> Result<Self, SyslogError> {
        let err = |what, source| SyslogError::Bind {
            path: path.to_path_buf(),
            what,
            source,
        };
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| err("socket", e))?;
        let _ = std::fs::remove_file(path);
        let addr = UnixAddr::new(path).map_err(|e| err("address", e))?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(|e| err("bind", e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(|e| {
            err(
                "chmod",
                nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        })?;
        socket::setsockopt(&fd, sockopt::PassCred, &true).map_err(|e| err("SO_PASSCRED", e))?;
        Ok(Self { fd })
    }

    /// Receives forever (returns only if the socket fails for good).
    pub fn run(self, logger: &Logger, console: Console) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut warnings = RateLimiter::new(3, Duration::from_secs(60));
        let mut echoes = RateLimiter::new(10, Duration::from_secs(10));
        let mut failures = 0u32;
        loop {
            let (len, pid) = match self.recv(&mut buf) {
                Ok(got) => {
                    failures = 0;
                    got
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    failures += 1;
                    if failures >= 100 {
                        console.error(&format!(
                            "syslog: receiving on {DEV_LOG} keeps failing: {e}; receiver stopped"
                        ));
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&buf[..len]);
            let parsed = parse(&text);
            let sender = match (pid, &parsed.app) {
                (Some(pid), _) => format!("pid {pid}"),
                (None, Some(app)) => app.clone(),
                (None, None) => "unknown sender".into(),
            };
            let now = Instant::now();
            if !parsed.well_formed {
                if let Verdict::Emit { suppressed } = warnings.check(&sender, now) {
                    console.warn(&format!(
                        "syslog: {len}-byte datagram from {sender} on {DEV_LOG} is neither RFC 5424 nor RFC 3164; kept as user.notice{}",
                        suppressed_note(suppressed)
                    ));
                }
            }
            let name = parsed.app.clone().unwrap_or_else(|| "syslog".into());
            let level = console_level(parsed.severity);
            if level <= crate::console::Level::Warn && level <= console.level() {
                if let Verdict::Emit { suppressed } = echoes.check(&sender, now) {
                    let line = format!("{}{}", parsed.message, suppressed_note(suppressed));
                    console.echo(&name, &line);
                }
            }
            let mut record = Record::now(
                Origin::Syslog,
                parsed.facility,
                parsed.severity,
                &name,
                &parsed.message,
            );
            record.pid = parsed.pid.or(pid);
            logger.push(record);
        }
    }

    /// One datagram: (length, sender pid from its credentials).
    fn recv(&self, buf: &mut [u8]) -> Result<(usize, Option<u32>), nix::errno::Errno> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(libc::ucred);
        let msg = socket::recvmsg::<()>(
            self.fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )?;
        let mut pid = None;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmCredentials(creds) = cmsg {
                pid = u32::try_from(creds.pid()).ok();
            }
        }
        Ok((msg.bytes, pid))
    }
}

fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} similar lines suppressed)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424() {
        let p =
            parse("<165>1 2026-11-27T20:00:00.003Z host app 42 ID47 [x@1 a=\"b\"] hello there\n");
        assert_eq!(p.facility.as_str(), "local4");
        assert_eq!(p.severity, Severity::Notice);
        assert_eq!(p.app.as_deref(), Some("app"));
        assert_eq!(p.pid, Some(42));
        assert_eq!(p.message, "hello there");
        assert!(p.well_formed);
    }

    #[test]
    fn rfc3164_as_glibc_sends_it() {
        // glibc syslog(3): "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG", no hostname.
        let p = parse("<27>Nov 27 20:01:02 myapp[123]: disk almost full");
        assert_eq!(p.facility, Facility::DAEMON);
        assert_eq!(p.severity, Severity::Err);
        assert_eq!(p.app.as_deref(), Some("myapp"));
        assert_eq!(p.pid, Some(123));
        assert_eq!(p.message, "disk almost full");
    }

    #[test]
    fn rfc3164_with_hostname() {
        let p = parse("<14>Nov  7 01:02:03 edge-7 cron: job done");
        assert_eq!(p.severity, Severity::Info);
        assert_eq!(p.facility, Facility::USER);
        assert_eq!(p.app.as_deref(), Some("cron"));
        assert_eq!(p.message, "job done");
    }

    #[test]
    fn garbage_is_kept_whole_as_user_notice() {
        let p = parse("just some text\nwith a newline");
        assert!(!p.well_formed);
        assert_eq!((p.facility, p.severity), (Facility::USER, Severity::Notice));
        assert_eq!(p.message, "just some text with a newline");
        let p = parse("<999>x");
        assert_eq!((p.facility, p.severity), (Facility::USER, Severity::Notice));
        assert!(p.message.contains('x'));
    }

    #[test]
    fn receiver_records_datagrams_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let receiver = Receiver::bind(&path).unwrap();
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 16)));
        std::thread::spawn(move || {
            receiver.run(logger, Console::new(crate::console::Level::Error))
        });
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sock.send_to(b"<30>1 - - tester - - - from the test", &path)
            .unwrap();
        assert!(logger.wait_for(0, Duration::from_secs(10)));
        let batch = logger.read_from(0, &Default::default(), 10);
        let r = &batch.records[0];
        assert_eq!(
            (r.origin, r.name.as_str(), r.message.as_str()),
            (Origin::Syslog, "tester", "from the test")
        );
        assert_eq!((r.facility, r.severity), (Facility::DAEMON, Severity::Info));
        assert_eq!(r.pid, Some(std::process::id()));
    }
}
