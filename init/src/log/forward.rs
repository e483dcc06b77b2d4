//! Forwarding to a remote syslog server: RFC 5424 messages over UDP (one per datagram,
//! RFC 5426) or TCP (octet-counting framing, RFC 6587 section 3.4.1: `LEN SP MSG`).
//!
//! The forwarder is a reader of the ring with its own cursor, so the ring is its bounded
//! queue: while the server is unreachable nothing is sent and nothing is copied; when the
//! ring drops records the forwarder had not sent yet, the oldest are lost and counted, and
//! one warning says how many. Reconnects back off from 1 s to 30 s. Nothing here can block
//! init: the thread only reads the ring.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::config::{Target, Transport};
use super::record::{Filter, Record, Severity};
use super::Logger;
use crate::console::Console;

/// First reconnect delay.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Connect and write timeout for TCP.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest UDP datagram sent; longer messages are cut (RFC 5426 section 3.2: receivers
/// should take 2048 octets, IPv4 cannot carry more than 65507).
pub const MAX_UDP: usize = 8192;

/// Errors of one forwarding attempt.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The host name did not resolve.
    #[error("cannot resolve {host_port}: {source}")]
    Resolve {
        /// `host:port`.
        host_port: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Connecting or sending failed.
    #[error("{what} {addr}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The server.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// RFC 5424 header field: printable US-ASCII without spaces, at most `max` characters, `-`
/// when empty.
fn header_field(value: &str, max: usize) -> String {
    let clean: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() {
        "-".into()
    } else {
        clean
    }
}

/// Formats `r` as an RFC 5424 message:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG` (no BOM; MSGID and
/// STRUCTURED-DATA are nil).
pub fn format_5424(r: &Record, hostname: &str) -> String {
    let pri = u32::from(r.facility.code()) * 8 + u32::from(r.severity.code());
    let time = chrono::DateTime::<chrono::Utc>::from(r.time)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let procid = r.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    format!(
        "<{pri}>1 {time} {} {} {procid} - - {}",
        header_field(hostname, 255),
        header_field(&r.name, 48),
        r.message
    )
}

/// Frames `msg` for TCP with octet counting: `<length> <msg>`.
pub fn frame_octet_counted(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

/// This node's name for the HOSTNAME field.
fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A connection to the server.
#[derive(Debug)]
pub enum Connection {
    /// A connected UDP socket.
    Udp(UdpSocket, SocketAddr),
    /// A TCP stream.
    Tcp(TcpStream, SocketAddr),
}

impl Connection {
    /// Resolves `target` and connects to its first address.
    pub fn open(target: &Target) -> Result<Self, ForwardError> {
        let resolve = |source| ForwardError::Resolve {
            host_port: target.host_port.clone(),
            source,
        };
        let addr = target
            .host_port
            .to_socket_addrs()
            .map_err(resolve)?
            .next()
            .ok_or_else(|| {
                resolve(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
            })?;
        let io = |what| move |source| ForwardError::Io { what, addr, source };
        match target.transport {
            Transport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(local).map_err(io("cannot bind a UDP socket for"))?;
                sock.connect(addr).map_err(io("cannot connect to"))?;
                Ok(Self::Udp(sock, addr))
            }
            Transport::Tcp => {
                let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
                    .map_err(io("cannot connect to"))?;
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                let _ = stream.set_nodelay(true);
                Ok(Self::Tcp(stream, addr))
            }
        }
    }

    /// Sends one formatted message.
    pub fn send(&mut self, msg: &str) -> Result<(), ForwardError> {
        match self {
            Self::Udp(sock, addr) => {
                let mut end = msg.len().min(MAX_UDP);
                while !msg.is_char_boundary(end) {
                    end -= 1;
                }
                let addr = *addr;
                sock.send(&msg.as_bytes()[..end])
                    .map(drop)
                    .map_err(|source| ForwardError::Io {
                        what: "cannot send to",
                        addr,
                        source,
                    })
            }
            Self::Tcp(stream, addr) => {
                let addr = *addr;
                stream
                    .write_all(&frame_octet_counted(msg))
                    .map_err(|source| ForwardError::Io {
                        what: "cannot send to",
                        addr,
                        source,
                    })
            }
        }
    }
}

/// Forwards records of at most `min_severity` to `target` forever.
pub fn run(target: Target, min_severity: Severity, logger: &Logger, console: Console) {
    let filter = Filter {
        min_severity,
        source: None,
    };
    let mut cursor = logger.first_seq();
    let mut connection: Option<Connection> = None;
    let mut backoff = BACKOFF_INITIAL;
    let mut retry_at = Instant::now();
    let mut failures_reported = 0u32;
    let mut dropped: u64 = 0;
    let host = hostname();
    loop {
        if connection.is_none() {
            let wait = retry_at.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            match Connection::open(&target) {
                Ok(c) => {
                    backoff = BACKOFF_INITIAL;
                    if failures_reported > 0 {
                        console.info(&format!(
                            "log forwarding: connected to {}",
                            target.host_port
                        ));
                    }
                    failures_reported = 0;
                    connection = Some(c);
                }
                Err(err) => {
                    // The network may not be up yet: one warning, then quiet until it works.
                    if failures_reported == 0 {
                        console.warn(&format!("log forwarding: {err}; retrying with back-off"));
                    }
                    failures_reported += 1;
                    retry_at = Instant::now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        let batch = logger.read_from(cursor, &filter, 256);
        if batch.missed > 0 {
            dropped += batch.missed;
            console.warn(&format!(
                "log forwarding: {} records dropped before they could be sent ({dropped} in total)",
                batch.missed
            ));
        }
        let mut sent = cursor.max(logger.first_seq());
        let mut failed = None;
        if let Some(conn) = connection.as_mut() {
            for record in &batch.records {
                if let Err(err) = conn.send(&format_5424(record, &host)) {
                    failed = Some(err);
                    break;
                }
                sent = record.seq + 1;
            }
        }
        if let Some(err) = failed {
            console.warn(&format!("log forwarding: {err}; reconnecting"));
            connection = None;
            failures_reported = 1;
            retry_at = Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            cursor = sent;
            continue;
        }
        cursor = batch.next;
        if batch.records.is_empty() && batch.missed == 0 {
            logger.wait_for(batch.next, Duration::from_secs(60));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Facility, Origin};
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn record(message: &str) -> Record {
        let mut r = Record::now(
            Origin::Syslog,
            Facility::DAEMON,
            Severity::Err,
            "my app",
            message,
        );
        r.time = std::time::SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        r
    }

    #[test]
    fn formats_rfc5424() {
        let mut r = record("disk full");
        assert_eq!(
            format_5424(&r, "edge-7"),
            "<27>1 2023-11-14T22:13:20.123456Z edge-7 myapp - - - disk full"
        );
        r.pid = Some(42);
        r.name = String::new();
        assert_eq!(
            format_5424(&r, ""),
            "<27>1 2023-11-14T22:13:20.123456Z - - 42 - - disk full"
        );
        // The output parses back with the same fields.
        let back = super::super::syslog::parse(&format_5424(&r, "edge-7"));
        assert_eq!(
            (back.facility, back.severity, back.pid),
            (Facility::DAEMON, Severity::Err, Some(42))
        );
        assert_eq!(back.message, "disk full");
    }

    #[test]
    fn octet_counting_frames() {
        assert_eq!(frame_octet_counted("héllo"), b"6 h\xc3\xa9llo");
    }

    /// Reads one octet-counted frame.
    fn read_frame(r: &mut impl BufRead) -> String {
        let mut len = Vec::new();
        r.read_until(b' ', &mut len).unwrap();
        let n: usize = std::str::from_utf8(&len[..len.len() - 1])
            .unwrap()
            .parse()
            .unwrap();
        let mut msg = vec![0; n];
        r.read_exact(&mut msg).unwrap();
        String::from_utf8(msg).unwrap()
    }

    #[test]
    fn forwards_over_tcp_with_framing_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 16)));
        logger.push(record("first\nline"));
        let target = Target {
            transport: Transport::Tcp,
            host_port: format!("127.0.0.1:{port}"),
        };
        std::thread::spawn(move || {
            run(
                target,
                Severity::Warning,
                logger,
                Console::new(crate::console::Level::Error),
            )
        });
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(conn);
        assert!(read_frame(&mut reader).ends_with(" - - first\nline"));
        // Too low a severity is not forwarded; the next one is.
        logger.init_message(crate::console::Level::Info, "not forwarded");
        logger.init_message(crate::console::Level::Error, "forwarded");
        let msg = read_frame(&mut reader);
        assert!(
            msg.starts_with("<27>1 ") && msg.ends_with(" berth-init - - - forwarded"),
            "{msg}"
        );
        // The server goes away; records sent meanwhile arrive after the reconnect.
        drop(reader);
        for i in 0..5 {
            logger.init_message(crate::console::Level::Error, &format!("while away {i}"));
            std::thread::sleep(Duration::from_millis(50));
        }
        let (conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut reader = BufReader::new(conn);
        let msg = read_frame(&mut reader);
        assert!(msg.contains("while away"), "{msg}");
    }

    #[test]
    fn forwards_over_udp() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let port = server.local_addr().unwrap().port();
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 16)));
        let target = Target {
            transport: Transport::Udp,
            host_port: format!("127.0.0.1:{port}"),
        };
        std::thread::spawn(move || {
            run(
                target,
                Severity::Info,
                logger,
                Console::new(crate::console::Level::Error),
            )
        });
        logger.push(record("over udp"));
        let mut buf = [0u8; 2048];
        let n = server.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(
            msg.starts_with("<27>1 2023-11-14T22:13:20.123456Z ")
                && msg.ends_with(" myapp - - - over udp"),
            "{msg}"
        );
    }
}
