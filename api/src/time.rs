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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(from_nanos(nanos(t)), Some(t));
        assert_eq!(from_nanos(0), None);
        assert_eq!(from_nanos(-5), None);
    }
}
