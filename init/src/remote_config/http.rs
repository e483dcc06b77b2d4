//! Plain HTTP/1.0 GET of `berth.config=http://…`, by hand over `std::net::TcpStream` (why by
//! hand: see the parent module), and the URL grammar both schemes share.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use super::FetchError;

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a read or write may stall.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A parsed `http://` or `https://` URL with an IP-address host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Server address.
    pub addr: SocketAddr,
    /// The `Host:` header value (`host[:port]` as written).
    pub host: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `https://`: fetched by the pinned-TLS helper ([`super::https`]), not [`get`].
    pub tls: bool,
}

impl HttpUrl {
    /// Parses `http://<ip>[:port][/path]`; IPv6 addresses in brackets.
    pub fn parse(url: &str) -> Result<Self, FetchError> {
        let fail = |reason: &str| FetchError::Url {
            reason: reason.to_string(),
        };
        let (tls, rest) = match url.split_once("://") {
            Some(("http", rest)) => (false, rest),
            Some(("https", rest)) => (true, rest),
            _ => return Err(fail("expected an http:// or https:// URL")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.contains('@') {
            return Err(fail("user information in the URL is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, after) = v6
                .split_once(']')
                .ok_or_else(|| fail("unclosed [ in the host"))?;
            (ip, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(fail("no host"));
        }
        let ip: IpAddr = host.parse().map_err(|_| {
            fail(&format!(
                "host {host:?} is not an IP address (init resolves no names this early; use the server's address)"
            ))
        })?;
        let port = match port {
            None | Some("") if tls => 443,
            None | Some("") => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| fail(&format!("bad port {p:?}")))?,
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail("whitespace in the path"));
        }
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host: authority.to_string(),
            path,
            tls,
        })
    }
}

/// One HTTP/1.0 GET; the body if the answer is `200`.
pub fn get(url: &HttpUrl, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let mut stream = TcpStream::connect_timeout(&url.addr, CONNECT_TIMEOUT).map_err(|source| {
        FetchError::Connect {
            addr: url.addr,
            source,
        }
    })?;
    let io = |what| move |source| FetchError::Io { what, source };
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(io("set socket timeouts"))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: berth-init/{}\r\nAccept: */*\r\n\r\n",
        url.path,
        url.host,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .map_err(io("send the request"))?;
    // Read until the end of the head, keeping what follows it.
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(FetchError::Malformed {
                reason: "response head too long",
            });
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).map_err(io("read the response"))?;
        if n == 0 {
            return Err(FetchError::Malformed {
                reason: "connection closed before the end of the response head",
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| FetchError::Malformed {
        reason: "response head is not text",
    })?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..))
        .ok_or(FetchError::Malformed {
            reason: "no HTTP status line",
        })?;
    if !status.starts_with("200") {
        return Err(FetchError::Status {
            status: status.trim().to_string(),
        });
    }
    let mut length: Option<u64> = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse().map_err(|_| FetchError::Malformed {
                reason: "bad Content-Length",
            })?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.trim().eq_ignore_ascii_case("identity")
        {
            // HTTP/1.0 requests must not get chunked answers (RFC 9112 §7.1).
            return Err(FetchError::Malformed {
                reason: "transfer encoding on an HTTP/1.0 response",
            });
        }
    }
    if length.is_some_and(|l| l > max_bytes) {
        return Err(FetchError::TooLarge { max: max_bytes });
    }
    let mut body = buf.split_off(head_end);
    // One byte over the limit tells "too large" from "exactly the limit".
    let limit = length.unwrap_or(max_bytes + 1);
    (&mut stream)
        .take(limit.saturating_sub(body.len() as u64))
        .read_to_end(&mut body)
        .map_err(io("read the body"))?;
    match length {
        Some(l) if (body.len() as u64) < l => Err(FetchError::Malformed {
            reason: "connection closed before Content-Length bytes",
        }),
        Some(l) => {
            body.truncate(l as usize);
            Ok(body)
        }
        None if body.len() as u64 > max_bytes => Err(FetchError::TooLarge { max: max_bytes }),
        None => Ok(body),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
/// Serves each of `answers` to one connection, in order, on loopback.
pub(crate) fn serve(answers: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for answer in answers {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap();
            requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            s.write_all(&answer).unwrap();
        }
        requests
    });
    (format!("http://{addr}"), handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_say_why() {
        let u = HttpUrl::parse("http://10.0.2.2:8080/n/node.toml?x=1#f").unwrap();
        assert_eq!(u.addr, "10.0.2.2:8080".parse().unwrap());
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("10.0.2.2:8080", "/n/node.toml?x=1")
        );
        let u = HttpUrl::parse("http://[fd00::1]").unwrap();
        assert_eq!((u.addr.port(), u.path.as_str(), u.tls), (80, "/", false));
        let u = HttpUrl::parse("https://10.0.2.2/node.toml").unwrap();
        assert_eq!((u.addr.port(), u.tls), (443, true));
        for (url, want) in [
            ("ftp://10.0.0.1/x", "expected an http:// or https:// URL"),
            ("http://boot.example/x", "is not an IP address"),
            ("http://10.0.0.1:99999/x", "bad port"),
            ("http:///x", "no host"),
        ] {
            let err = HttpUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn gets_a_document_with_and_without_content_length() {
        let (base, server) = serve(vec![
            b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello-extra".to_vec(),
            b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nuntil close".to_vec(),
        ]);
        let url = HttpUrl::parse(&format!("{base}/node.toml")).unwrap();
        assert_eq!(get(&url, 100).unwrap(), b"hello");
        assert_eq!(get(&url, 100).unwrap(), b"until close");
        let requests = server.join().unwrap();
        assert!(
            requests[0].starts_with("GET /node.toml HTTP/1.0\r\nHost: 127.0.0.1:"),
            "{requests:?}"
        );
    }

    #[test]
    fn errors_name_the_status_and_the_limit() {
        let (base, server) = serve(vec![
            b"HTTP/1.0 404 Not Found\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\n\r\n0123456789ABC".to_vec(),
            b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nshort".to_vec(),
        ]);
        let url = HttpUrl::parse(&base).unwrap();
        assert_eq!(
            get(&url, 10).unwrap_err().to_string(),
            "server answered 404 Not Found"
        );
        let too_large = "document larger than 10 bytes ([remote_config] max_bytes)";
        assert_eq!(get(&url, 10).unwrap_err().to_string(), too_large);
        assert_eq!(get(&url, 10).unwrap_err().to_string(), too_large);
        assert!(get(&url, 10)
            .unwrap_err()
            .to_string()
            .contains("before Content-Length"));
        server.join().unwrap();
    }
}
