//! The clock floor: a node without RTC battery or time server boots near 1970 (or wherever a
//! dead RTC stopped), where every certificate is "not yet valid" and the remote API would
//! refuse every operator. The node never believes a time older than what it knows has passed:
//!
//! - the image's build time (`SOURCE_DATE_EPOCH`, written by berth-image to
//!   [`berth_layout::paths::BUILD_EPOCH`]);
//! - the last time recorded on the state disk ([`RECORD`], written at boot, hourly and before
//!   a reboot or power-off);
//! - the start of validity (`notBefore`) of the node's own remote-API certificate and CA:
//!   they were issued before they reached the node. `berthctl pki` backdates client
//!   certificates to their CA's `notBefore`, so once the floor has passed the CA's, every
//!   client certificate of that CA is valid on the node as far as its start goes.
//!
//! When the clock is behind the floor, init sets it to the floor and says so once, naming the
//! source. A time server, when there is one, corrects the clock afterwards as usual.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::console::Console;

/// The last time the node knew, on the state disk (seconds since the epoch, one line).
pub const RECORD: &str = "/var/lib/berth-init/clock";

/// A time the clock must not be behind, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Floor {
    /// Seconds since the epoch.
    pub secs: u64,
    /// In words: "the image's build time", "the last time recorded on the state disk", …
    pub source: String,
}

/// Reads a file holding seconds since the epoch.
fn read_secs(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The floor from the build time, the record and the `notBefore` of every certificate in
/// `cert_files` (PEM): the latest of them.
pub fn compute(build_epoch: &Path, record: &Path, cert_files: &[&Path]) -> Option<Floor> {
    let mut best: Option<Floor> = None;
    let mut offer = |secs: u64, source: String| {
        if best.as_ref().is_none_or(|b| secs > b.secs) {
            best = Some(Floor { secs, source });
        }
    };
    if let Some(s) = read_secs(build_epoch) {
        offer(s, "the image's build time".into());
    }
    if let Some(s) = read_secs(record) {
        offer(
            s,
            format!(
                "the last time recorded on the state disk ({})",
                record.display()
            ),
        );
    }
    for file in cert_files {
        let Ok(pem) = std::fs::read_to_string(file) else {
            continue;
        };
        for der in pem_certificates(&pem) {
            if let Some(s) = not_before(&der) {
                offer(s, format!("the start of validity of {}", file.display()));
            }
        }
    }
    best
}

/// Sets the clock to `floor` when it is behind it; returns the console line said (once per
/// call that moved the clock).
pub fn enforce(floor: &Floor, console: Console) -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now >= floor.secs {
        return None;
    }
    let spec = nix::sys::time::TimeSpec::new(floor.secs as libc::time_t, 0);
    let line = match nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, spec) {
        Ok(()) => format!(
            "time: the clock said {}, before {} ({}); set to that, the earliest time this node can be at",
            rfc3339(now),
            rfc3339(floor.secs),
            floor.source
        ),
        Err(e) => format!(
            "time: the clock says {}, before {} ({}), and cannot be set: {e}",
            rfc3339(now),
            rfc3339(floor.secs),
            floor.source
        ),
    };
    console.warn(&line);
    Some(line)
}

/// Records the current time on the state disk, when the state disk is there (a diskless
/// node's `/var` is a tmpfs: recording there is harmless and useless).
pub fn record(path: &Path) {
    let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
        return;
    };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::atomic::write(path, format!("{}\n", now.as_secs()).as_bytes(), 0o644);
}

/// How often the main loop records the time.
pub const RECORD_EVERY: Duration = Duration::from_secs(3600);

/// `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The DER of every `CERTIFICATE` block of `pem`.
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        if line == "-----BEGIN CERTIFICATE-----" {
            body = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b) = body.take() {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b) {
                    out.push(der);
                }
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    out
}

/// One DER element: (tag, content, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let content = b.get(head..head.checked_add(len)?)?;
    Some((tag, content, &b[head + len..]))
}

/// `notBefore` of a certificate (RFC 5280 §4.1: Certificate → TBSCertificate → [version],
/// serialNumber, signature, issuer, validity), in seconds since the epoch.
pub fn not_before(der: &[u8]) -> Option<u64> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (0x30, validity, _) = tlv(rest)? else {
        return None;
    };
    let (tag, time, _) = tlv(validity)?;
    let text = std::str::from_utf8(time).ok()?.strip_suffix('Z')?;
    let digits = |s: &str| s.parse::<u32>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = i64::from(digits(text.get(..2)?)?);
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, text.get(2..)?)
        }
        0x18 => (i64::from(digits(text.get(..4)?)?), text.get(4..)?),
        _ => return None,
    };
    let [mo, d, h, mi, s] = [0, 2, 4, 6, 8].map(|i| rest.get(i..i + 2).and_then(digits));
    let days = days_from_civil(year, mo?, d?);
    let secs = days * 86_400 + i64::from(h? * 3600 + mi? * 60 + s?);
    u64::try_from(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // A self-signed P-256 certificate whose notBefore is 2026-12-01T10:00:00Z (made with
    // Python's `cryptography`, `not_valid_before(datetime(2026, 12, 1, 10))`).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBBzCBraADAgECAgMS1ocwCgYIKoZIzj0EAwIwDDEKMAgGA1UEAwwBdDAeFw0y
NjEyMDExMDAwMDBaFw0yNjEyMDIxMDAwMDBaMAwxCjAIBgNVBAMMAXQwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAASKy36m0KhBiCOBD8ZMwnfXe9UOvMHAGwj6OGiB
K7shCX1w3KUsKjdLJ57rBYI8DvUXhstV/mwYH7qDpRacuZ9yMAoGCCqGSM49BAMC
A0kAMEYCIQD38lIXOF9loxn8xtYX4gqHZYAhRvbgAj2I0ccY2QhoYwIhAPhYgHCr
d5/qP6a6c/Th0oxk4Eob5kLdUOLetkvtoC62
-----END CERTIFICATE-----
";

    #[test]
    fn reads_not_before_of_a_certificate() {
        let der = pem_certificates(CERT);
        assert_eq!(der.len(), 1);
        let secs = not_before(&der[0]).unwrap();
        assert_eq!(rfc3339(secs), "2026-12-01T10:00:00Z");
        assert!(not_before(b"\x30\x03\x02\x01\x00").is_none());
    }

    #[test]
    fn the_floor_is_the_latest_source() {
        let dir = tempfile::tempdir().unwrap();
        let build = dir.path().join("build-epoch");
        let record = dir.path().join("clock");
        let cert = dir.path().join("node.pem");
        assert_eq!(compute(&build, &record, &[&cert]), None);
        std::fs::write(&build, "1700000000\n").unwrap();
        let f = compute(&build, &record, &[&cert]).unwrap();
        assert_eq!(
            (f.secs, f.source.as_str()),
            (1_700_000_000, "the image's build time")
        );
        std::fs::write(&cert, CERT).unwrap();
        let f = compute(&build, &record, &[&cert]).unwrap();
        assert!(f.source.contains("node.pem"), "{f:?}");
        record_at(&record, 1_900_000_000);
        let f = compute(&build, &record, &[&cert]).unwrap();
        assert_eq!(f.secs, 1_900_000_000);
        assert!(f.source.contains("state disk"));
    }

    fn record_at(path: &Path, secs: u64) {
        std::fs::write(path, format!("{secs}\n")).unwrap();
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        for days in [-1, 0, 10_957, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
