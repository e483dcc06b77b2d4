//! SNTP client mode (RFC 4330, the client subset of RFC 5905): one request, one reply, the
//! offset and round-trip delay from the four timestamps.
//!
//! Written by hand: the protocol is one 48-byte packet each way, and the NTP crates on
//! crates.io are either full daemons (ntpd-rs) or unmaintained; neither fits PID 1.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET: i128 = 2_208_988_800;
/// NTP packet length without extensions.
pub const PACKET_LEN: usize = 48;

/// Errors of one SNTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum SntpError {
    /// The socket could not be used.
    #[error("{op}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No reply in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The reply is not a usable server answer.
    #[error("bad reply: {0}")]
    BadReply(&'static str),
}

/// Nanoseconds since the Unix epoch: wide enough for the difference of any two timestamps.
pub type Nanos = i128;

/// The current `CLOCK_REALTIME` in [`Nanos`].
pub fn now_nanos() -> Nanos {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// An NTP timestamp (seconds since 1900 and a 2^-32 fraction) → [`Nanos`]. Timestamps are
/// read in the era that puts them within 68 years of 2036's wrap (RFC 4330 §3): seconds
/// with the top bit clear are after 2036-02-07.
pub fn from_ntp(ts: u64) -> Nanos {
    let secs = (ts >> 32) as i128;
    let frac = (ts & 0xffff_ffff) as i128;
    let secs = if secs < 0x8000_0000 {
        secs + (1 << 32)
    } else {
        secs
    };
    (secs - NTP_UNIX_OFFSET) * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
}

/// [`Nanos`] → NTP timestamp (the era wraps, as on the wire).
pub fn to_ntp(nanos: Nanos) -> u64 {
    let secs = nanos.div_euclid(1_000_000_000) + NTP_UNIX_OFFSET;
    let sub = nanos.rem_euclid(1_000_000_000);
    let frac = ((sub << 32) / 1_000_000_000) as u64;
    ((secs as u64 & 0xffff_ffff) << 32) | frac
}

/// A client request carrying `transmit` (our clock) as its transmit timestamp: LI 0,
/// version 4, mode 3 (client).
pub fn request(transmit: Nanos) -> [u8; PACKET_LEN] {
    let mut p = [0u8; PACKET_LEN];
    p[0] = 4 << 3 | 3;
    p[40..48].copy_from_slice(&to_ntp(transmit).to_be_bytes());
    p
}

/// The fields of a server reply that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Stratum (1 = primary).
    pub stratum: u8,
    /// Originate timestamp: must echo our request's transmit timestamp.
    pub originate: u64,
    /// Server receive time (T2).
    pub receive: Nanos,
    /// Server transmit time (T3).
    pub transmit: Nanos,
}

/// Checks and reads a reply (RFC 4330 §5: mode 4 or 5, stratum 1..=15 — 0 is a
/// kiss-o'-death —, a non-zero transmit timestamp, leap indicator not 3 = unsynchronised).
pub fn parse_reply(p: &[u8]) -> Result<Reply, SntpError> {
    if p.len() < PACKET_LEN {
        return Err(SntpError::BadReply("shorter than 48 bytes"));
    }
    let li = p[0] >> 6;
    let mode = p[0] & 7;
    if mode != 4 && mode != 5 {
        return Err(SntpError::BadReply("not a server reply (mode)"));
    }
    if li == 3 {
        return Err(SntpError::BadReply(
            "server clock not synchronised (leap indicator 3)",
        ));
    }
    let stratum = p[1];
    if stratum == 0 {
        return Err(SntpError::BadReply("kiss-o'-death (stratum 0)"));
    }
    if stratum > 15 {
        return Err(SntpError::BadReply("stratum above 15"));
    }
    let ts = |at: usize| u64::from_be_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    if ts(40) == 0 {
        return Err(SntpError::BadReply("zero transmit timestamp"));
    }
    Ok(Reply {
        stratum,
        originate: ts(24),
        receive: from_ntp(ts(32)),
        transmit: from_ntp(ts(40)),
    })
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// How far our clock is behind the server's (add it to our clock).
    pub offset: Nanos,
    /// Round-trip delay without the server's processing time.
    pub delay: Nanos,
}

/// RFC 4330 §5: offset = ((T2 − T1) + (T3 − T4)) / 2, delay = (T4 − T1) − (T3 − T2).
pub fn sample(t1: Nanos, t2: Nanos, t3: Nanos, t4: Nanos) -> Sample {
    Sample {
        offset: ((t2 - t1) + (t3 - t4)) / 2,
        delay: (t4 - t1) - (t3 - t2),
    }
}

/// Asks `server` once; waits up to `timeout`.
pub fn query(server: SocketAddr, timeout: Duration) -> Result<Sample, SntpError> {
    let io = |op| move |source| SntpError::Io { op, source };
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal");
    let sock = UdpSocket::bind(bind).map_err(io("bind"))?;
    sock.connect(server).map_err(io("connect"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(io("SO_RCVTIMEO"))?;
    let t1 = now_nanos();
    let req = request(t1);
    sock.send(&req).map_err(io("send"))?;
    let deadline = std::time::Instant::now() + timeout;
    let mut buf = [0u8; 128];
    loop {
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(SntpError::Timeout(timeout));
            }
            Err(e) => return Err(io("recv")(e)),
        };
        let t4 = now_nanos();
        let reply = parse_reply(&buf[..n])?;
        // A stray or replayed packet does not echo our transmit timestamp: wait for ours.
        if reply.originate == u64::from_be_bytes(req[40..48].try_into().expect("8 bytes")) {
            return Ok(sample(t1, reply.receive, reply.transmit, t4));
        }
        if std::time::Instant::now() >= deadline {
            return Err(SntpError::Timeout(timeout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i128 = 1_000_000_000;

    #[test]
    fn timestamps_round_trip_and_know_their_era() {
        for nanos in [
            0,
            1_700_000_000 * NS + 123_456_789,
            2_085_978_496 * NS + 5,
            978_307_200 * NS,
        ] {
            let back = from_ntp(to_ntp(nanos));
            assert!((back - nanos).abs() <= 1, "{nanos} -> {back}");
        }
        // 1900-01-01 era 0 start would be ambiguous; era 1 (after 2036-02-07) reads right.
        let after_wrap = 2_085_978_496 * NS + 10 * NS; // 2036-02-07 06:28:26 UTC
        assert_eq!(to_ntp(after_wrap) >> 32, 10);
        assert_eq!(from_ntp(to_ntp(after_wrap)), after_wrap);
        // The Unix epoch is NTP second 2208988800.
        assert_eq!(to_ntp(0) >> 32, 2_208_988_800);
    }

    #[test]
    fn request_is_a_version_4_client_packet() {
        let t = 1_800_000_000 * NS;
        let p = request(t);
        assert_eq!(p[0], 0b00_100_011);
        assert_eq!(
            from_ntp(u64::from_be_bytes(p[40..48].try_into().unwrap())) / NS,
            1_800_000_000
        );
    }

    fn reply(first: u8, stratum: u8, originate: u64, receive: Nanos, transmit: Nanos) -> [u8; 48] {
        let mut p = [0u8; 48];
        p[0] = first;
        p[1] = stratum;
        p[24..32].copy_from_slice(&originate.to_be_bytes());
        p[32..40].copy_from_slice(&to_ntp(receive).to_be_bytes());
        p[40..48].copy_from_slice(&to_ntp(transmit).to_be_bytes());
        p
    }

    #[test]
    fn replies_are_checked() {
        let t = 1_800_000_000 * NS;
        let ok = reply(4 << 3 | 4, 2, 7, t, t + 1000);
        let r = parse_reply(&ok).unwrap();
        assert_eq!((r.stratum, r.originate), (2, 7));
        assert!((r.transmit - (t + 1000)).abs() <= 1);
        assert!(parse_reply(&ok[..40]).is_err());
        assert!(
            matches!(parse_reply(&reply(4 << 3 | 3, 2, 7, t, t)), Err(SntpError::BadReply(m)) if m.contains("mode"))
        );
        assert!(
            matches!(parse_reply(&reply(4 << 3 | 4, 0, 7, t, t)), Err(SntpError::BadReply(m)) if m.contains("kiss"))
        );
        assert!(
            matches!(parse_reply(&reply(3 << 6 | 4 << 3 | 4, 2, 7, t, t)), Err(SntpError::BadReply(m)) if m.contains("leap"))
        );
    }

    #[test]
    fn offset_and_delay() {
        // Client 1000 s behind, 20 ms each way, 1 ms in the server.
        let t1 = 1_000 * NS;
        let t2 = t1 + 1_000 * NS + 20_000_000;
        let t3 = t2 + 1_000_000;
        let t4 = t1 + 41_000_000;
        let s = sample(t1, t2, t3, t4);
        assert_eq!(s.offset, 1_000 * NS);
        assert_eq!(s.delay, 40_000_000);
        // Ahead by 2.5 s, asymmetric path: the offset error is half the asymmetry.
        let s = sample(
            10 * NS,
            10 * NS - 2_500_000_000 + 30_000_000,
            10 * NS - 2_500_000_000 + 30_000_000,
            10 * NS + 40_000_000,
        );
        assert_eq!(s.offset, -2_500_000_000 + 10_000_000);
        assert_eq!(s.delay, 40_000_000);
    }

    /// A responder on loopback that is `ahead` in the future.
    fn responder(ahead: Nanos, stratum: u8) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 128];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                if n < 48 {
                    continue;
                }
                let now = now_nanos() + ahead;
                let mut p = reply(
                    4 << 3 | 4,
                    stratum,
                    u64::from_be_bytes(buf[40..48].try_into().unwrap()),
                    now,
                    now,
                );
                p[1] = stratum;
                let _ = sock.send_to(&p, peer);
            }
        });
        addr
    }

    #[test]
    fn query_against_a_loopback_responder() {
        let addr = responder(1_000 * NS, 2);
        let s = query(addr, Duration::from_secs(2)).unwrap();
        println!("offset {} ns, delay {} ns", s.offset, s.delay);
        assert!((s.offset - 1_000 * NS).abs() < NS / 2, "{s:?}");
        let kod = responder(0, 0);
        assert!(matches!(
            query(kod, Duration::from_secs(2)),
            Err(SntpError::BadReply(_))
        ));
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let e = query(silent.local_addr().unwrap(), Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, SntpError::Timeout(_)), "{e}");
    }
}
