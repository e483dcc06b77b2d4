//! `syslog`: one RFC 5424 message as a datagram to `/dev/log`.
//!
//! Format (RFC 5424 §6): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`, with PRI
//! `user.info` (14), no MSGID and no structured data.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::OpError;
use crate::protocol::Empty;

/// The local syslog socket.
pub const DEV_LOG: &str = "/dev/log";

/// APP-NAME of the messages the agent sends.
pub const APP_NAME: &str = "berth-test-agent";

/// Sends `message` to the datagram socket at `socket`.
pub fn send(socket: &Path, message: &str) -> Result<Empty, OpError> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into());
    let line = format_rfc5424(
        14,
        SystemTime::now(),
        &hostname,
        APP_NAME,
        std::process::id(),
        message,
    );
    let sock = UnixDatagram::unbound().map_err(|source| OpError::Syslog {
        path: socket.into(),
        source,
    })?;
    match sock.send_to(line.as_bytes(), socket) {
        Ok(_) => Ok(Empty {}),
        Err(source)
            if matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            Err(OpError::SyslogNotListening {
                path: socket.into(),
                source,
            })
        }
        Err(source) => Err(OpError::Syslog {
            path: socket.into(),
            source,
        }),
    }
}

/// Formats one RFC 5424 message with a UTC timestamp in microseconds.
pub fn format_rfc5424(
    pri: u8,
    time: SystemTime,
    hostname: &str,
    app: &str,
    pid: u32,
    msg: &str,
) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "<{pri}>1 {y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z {hostname} {app} {pid} - - {msg}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc5424() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_716_123_000_042);
        assert_eq!(
            format_rfc5424(14, t, "node1", "app", 7, "hello"),
            "<14>1 2026-11-26T18:02:03.000042Z node1 app 7 - - hello"
        );
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn reports_when_nothing_listens_and_delivers_when_something_does() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        assert!(matches!(
            send(&path, "x"),
            Err(OpError::SyslogNotListening { .. })
        ));
        let receiver = UnixDatagram::bind(&path).unwrap();
        send(&path, "hello there").unwrap();
        let mut buf = [0u8; 512];
        let n = receiver.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        let tail = format!(" berth-test-agent {} - - hello there", std::process::id());
        assert!(
            text.starts_with("<14>1 ") && text.ends_with(&tail),
            "{text}"
        );
    }
}
