//! Times on the wire: unix nanoseconds in an `int64`.

use std::time::{Duration, SystemTime};

/// Unix nanoseconds (0 before the epoch).
pub fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The time of unix nanoseconds; `None` for 0 or less.
pub fn from_nanos(n: i64) -> Option<SystemTime> {
    u64::try_from(n)
        .ok()
        .filter(|n| *n > 0)
        .map(|n| SystemTime::UNIX_EPOCH + Duration::from_nanos(n))
}

/// `t` as RFC 3339 in UTC with nanoseconds, Go's `time.RFC3339Nano` layout less its
/// trimming of trailing zeros (`2026-12-08T10:11:12.000000042Z`): kubelet's CRI log
/// timestamps, which its parser and critest read with `time.RFC3339Nano`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_nano_in_utc() {
        let at = |n: u64| SystemTime::UNIX_EPOCH + Duration::from_nanos(n);
        assert_eq!(rfc3339_nano(at(0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nano(at(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339_nano(at(951_782_400_000_000_042)),
            "2000-02-29T00:00:00.000000042Z"
        );
    }

    #[test]
    fn times_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(from_nanos(nanos(t)), Some(t));
        assert_eq!(from_nanos(0), None);
        assert_eq!(from_nanos(-5), None);
    }
}
