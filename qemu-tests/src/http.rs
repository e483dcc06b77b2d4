//! A small HTTP file server on host loopback for network-boot scenarios: iPXE fetches the
//! kernel and initramfs from it and berth-init fetches `berth.config`. QEMU's user network
//! maps the guest's `10.0.2.2` to the host's loopback, so a guest reaches
//! `http://10.0.2.2:<port>/`.
//!
//! Written by hand on `std` (a thread per connection, `GET`/`HEAD` of the files in one
//! directory, `Connection: close`): the harness needs nothing more, and a real server
//! package would be one more system dependency to start and stop. Every request is recorded
//! (path, status, bytes, time since the server started, `User-Agent`) so a scenario can show
//! who fetched what and when.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method (`GET`, `HEAD`, …).
    pub method: String,
    /// Path as requested.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// When the request arrived, since the server started.
    pub at: Duration,
    /// How long answering took.
    pub took: Duration,
    /// The client's `User-Agent`, if any.
    pub user_agent: String,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    started: Instant,
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

/// Serves the files of a directory until dropped.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves `root` on `127.0.0.1` at a free port.
    pub fn serve(root: impl Into<PathBuf>) -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(Error::io("cannot bind the HTTP server"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("cannot read the HTTP server's address"))?;
        let shared = Arc::new(Shared {
            root: root.into(),
            started: Instant::now(),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accept = shared.clone();
        let thread = std::thread::Builder::new()
            .name("http-server".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if accept.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let conn = accept.clone();
                    let _ = std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || handle(&conn, stream));
                }
            })
            .map_err(Error::io("cannot start the HTTP server thread"))?;
        Ok(Self {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// The port on host loopback.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The URL a QEMU user-network guest reaches the server at (`http://10.0.2.2:<port>`).
    pub fn guest_url(&self) -> String {
        format!("http://10.0.2.2:{}", self.port())
    }

    /// When the server started; [`Request::at`] counts from here.
    pub fn started(&self) -> Instant {
        self.shared.started
    }

    /// The requests answered so far, in order of completion.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(shared: &Shared, stream: TcpStream) {
    let at = shared.started.elapsed();
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut user_agent = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.trim().is_empty() => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("user-agent") {
                        user_agent = value.trim().to_string();
                    }
                }
            }
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut stream = stream;
    let (status, bytes) = answer(&shared.root, &method, &path, &mut stream).unwrap_or((0, 0));
    // Recorded before the connection closes, so a client that saw the end sees the record.
    shared
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Request {
            method,
            path,
            status,
            bytes,
            at,
            took: shared.started.elapsed().saturating_sub(at),
            user_agent,
        });
    let _ = stream.shutdown(Shutdown::Both);
}

/// Writes the response; returns the status and the body bytes sent.
fn answer(root: &Path, method: &str, path: &str, out: &mut TcpStream) -> io::Result<(u16, u64)> {
    let simple = |out: &mut TcpStream, status: u16, reason: &str| -> io::Result<(u16, u64)> {
        let body = format!("{status} {reason}\n");
        write!(
            out,
            "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        if method != "HEAD" {
            out.write_all(body.as_bytes())?;
        }
        Ok((status, 0))
    };
    if method != "GET" && method != "HEAD" {
        return simple(out, 405, "Method Not Allowed");
    }
    let Some(file) = resolve(root, path) else {
        return simple(out, 404, "Not Found");
    };
    let Ok(mut input) = File::open(&file) else {
        return simple(out, 404, "Not Found");
    };
    let len = input.metadata()?.len();
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    if method == "HEAD" {
        return Ok((200, 0));
    }
    let sent = io::copy(&mut input, out)?;
    Ok((200, sent))
}

/// The file under `root` that `path` names, refusing anything that leaves `root`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let path = path.split(['?', '#']).next()?;
    let relative = Path::new(path.strip_prefix('/')?);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fetch(port: u16, request: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_files_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("node.toml"), "[time]\n").unwrap();
        let server = HttpServer::serve(dir.path()).unwrap();
        let ok = fetch(
            server.port(),
            "GET /node.toml HTTP/1.0\r\nUser-Agent: t/1\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Length: 7\r\n") && ok.ends_with("\r\n\r\n[time]\n"),
            "{ok}"
        );
        let missing = fetch(server.port(), "GET /../etc/passwd HTTP/1.0\r\n\r\n");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(
            (
                requests[0].status,
                requests[0].bytes,
                requests[0].user_agent.as_str()
            ),
            (200, 7, "t/1")
        );
        assert_eq!(requests[1].status, 404);
        assert_eq!(
            server.guest_url(),
            format!("http://10.0.2.2:{}", server.port())
        );
    }
}
