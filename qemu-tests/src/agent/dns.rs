//! `resolve`: one DNS A query to the first `nameserver` of `/etc/resolv.conf`, so a scenario
//! can check name resolution as the guest's programs see it (the image has no `getent`, and
//! berth's own binaries resolve in Rust from that same file).
//!
//! Hand-written on purpose: one question, one UDP exchange, A records out. A resolver crate
//! (hickory) would weigh more than the whole agent.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use super::OpError;
use crate::protocol::ResolveOutput;

/// The guest's resolver configuration (a symlink to init's `/run/berth/resolv.conf`).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Resolves `name` (A records) with the first name server of `resolv_conf`.
pub fn resolve(resolv_conf: &str, name: &str, timeout: Duration) -> Result<ResolveOutput, OpError> {
    let text = std::fs::read_to_string(resolv_conf).map_err(|source| OpError::File {
        what: "cannot read",
        path: resolv_conf.into(),
        source,
    })?;
    let server = text
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .find_map(|v| v.trim().parse::<std::net::IpAddr>().ok())
        .ok_or_else(|| OpError::Dns(format!("no nameserver in {resolv_conf}")))?;
    let server = SocketAddr::new(server, 53);
    let dns = |what: &str, e: std::io::Error| OpError::Dns(format!("{what} {server}: {e}"));
    let bind = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind).map_err(|e| dns("bind for", e))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| dns("timeout for", e))?;
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let query = encode_query(id, name).map_err(OpError::Dns)?;
    sock.send_to(&query, server)
        .map_err(|e| dns("cannot send to", e))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| dns("no answer from", e))?;
        if from != server || n < 12 || u16::from_be_bytes([buf[0], buf[1]]) != id {
            continue;
        }
        let addresses = parse_answers(&buf[..n]).map_err(OpError::Dns)?;
        return Ok(ResolveOutput {
            server: server.to_string(),
            addresses: addresses.iter().map(ToString::to_string).collect(),
        });
    }
}

/// A standard query with recursion desired for `name`, type A, class IN.
pub fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("invalid name {name:?}"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    Ok(q)
}

/// Skips a (possibly compressed) name at `at`; returns the offset after it.
fn skip_name(p: &[u8], mut at: usize) -> Result<usize, String> {
    loop {
        let len = *p.get(at).ok_or("truncated name")?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => return Ok(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// The A records of the answer section; an error for a non-zero RCODE.
pub fn parse_answers(p: &[u8]) -> Result<Vec<Ipv4Addr>, String> {
    if p.len() < 12 {
        return Err("short DNS reply".into());
    }
    let rcode = p[3] & 0x0f;
    if rcode != 0 {
        let what = match rcode {
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            5 => "REFUSED",
            _ => "error",
        };
        return Err(format!("DNS {what} (rcode {rcode})"));
    }
    let qd = u16::from_be_bytes([p[4], p[5]]);
    let an = u16::from_be_bytes([p[6], p[7]]);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(p, at)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(p, at)?;
        let rr = p.get(at..at + 10).ok_or("truncated record")?;
        let (kind, class) = (
            u16::from_be_bytes([rr[0], rr[1]]),
            u16::from_be_bytes([rr[2], rr[3]]),
        );
        let len = usize::from(u16::from_be_bytes([rr[8], rr[9]]));
        let data = p
            .get(at + 10..at + 10 + len)
            .ok_or("truncated record data")?;
        if kind == 1 && class == 1 && len == 4 {
            out.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_answer_round_trip() {
        let q = encode_query(0x1234, "only-host.test").unwrap();
        assert_eq!(&q[12..], b"\x09only-host\x04test\x00\x00\x01\x00\x01");
        // The reply: same header with QR and one answer, the question, then a compressed A.
        let mut r = q.clone();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 8, 7]);
        assert_eq!(parse_answers(&r).unwrap(), [Ipv4Addr::new(10, 9, 8, 7)]);
        r[3] = 0x83;
        assert!(parse_answers(&r).unwrap_err().contains("NXDOMAIN"));
        assert!(encode_query(1, "a..b").is_err());
    }
}
