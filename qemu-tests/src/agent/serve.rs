//! The connection loop on the virtio-serial port.
//!
//! A virtio-serial port is one byte stream that outlives host connections. With the device
//! open non-blocking, the guest driver tells us the host's state (see `port_fops_read` and
//! `port_fops_poll` in the kernel's `drivers/char/virtio_console.c`):
//! - `read` returns data while there is some, even after the host hung up;
//! - `read` returns 0 while no host is connected and nothing is buffered, and `poll` reports
//!   `POLLHUP` (immediately, so we sleep between checks instead of spinning);
//! - `read` fails with `EAGAIN` while a host is connected and silent.
//!
//! The host's connection state reaches the guest as a control message on another virtqueue
//! than the data, so a new host's first bytes can be read while the driver still believes no
//! host is connected (`read` then returns data, and `poll` says `POLLHUP`). Hence:
//! - a hang-up is believed only after the host was seen connected (`EAGAIN`, or `poll`
//!   without `POLLHUP`), or after it lasted [`HANG_UP_GRACE`]; then the unfinished line of
//!   the old connection is discarded so the next one starts clean;
//! - a reply that meets `POLLHUP` waits up to [`HANG_UP_GRACE`] for the host to show up
//!   before it is dropped (a late reply on a newer connection is harmless: clients match ids).
//!
//! A host that leaves half a line and reconnects within the grace is not noticed; the host
//! client ([`crate::client::AgentClient`]) starts every connection with an empty line so
//! such a leftover ends there.

use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{dispatch, wait_for_port};
use crate::protocol::{Op, Reply, Request};

/// Pause between checks while no host is connected.
const DISCONNECTED_POLL: Duration = Duration::from_millis(50);
/// How long "no host connected" must last before it is believed without having seen the host
/// connected first.
pub const HANG_UP_GRACE: Duration = Duration::from_millis(250);
/// Give up delivering one reply after this long (the host stopped reading).
const WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// A line longer than this is discarded: no request is legitimately that large.
const MAX_LINE: usize = 64 << 20;

/// Splits the byte stream of one host connection into request lines.
#[derive(Debug, Default)]
pub struct Session {
    partial: Vec<u8>,
}

impl Session {
    /// Adds received bytes; returns the lines they completed (without the newline).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            self.partial.extend_from_slice(chunk);
            if self.partial.last() == Some(&b'\n') {
                self.partial.pop();
                lines.push(std::mem::take(&mut self.partial));
            } else if self.partial.len() > MAX_LINE {
                eprintln!("discarding a request line longer than {MAX_LINE} bytes");
                self.partial.clear();
            }
        }
        lines
    }

    /// The host hung up: forget its unfinished line.
    pub fn hang_up(&mut self) {
        self.partial.clear();
    }
}

/// Parses and performs one request line; `None` for blank lines.
pub fn handle_line(line: &[u8]) -> Option<Reply> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<Request>(line) {
        Ok(request) => {
            if request.op != Op::Ping {
                eprintln!("request {}: {}", request.id, describe(&request.op));
            }
            Some(dispatch(request))
        }
        Err(e) => {
            // Answer with the id if the line was at least a JSON object carrying one.
            let id = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
                .unwrap_or(0);
            Some(Reply::failure(id, format!("invalid request: {e}")))
        }
    }
}

/// A one-line summary of a request for the console (no file contents).
fn describe(op: &Op) -> String {
    match op {
        Op::Ping => "ping".into(),
        Op::Run { argv, .. } => format!("run {argv:?}"),
        Op::WriteFile { path, .. } => format!("write_file {path}"),
        Op::ReadFile { path } => format!("read_file {path}"),
        Op::Kill { pid, signal } => format!("kill pid {pid} signal {signal}"),
        Op::Pidof { name } => format!("pidof {name}"),
        Op::Syslog { .. } => "syslog".into(),
        Op::Time => "time".into(),
        Op::Resolve { name } => format!("resolve {name}"),
    }
}

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The port's device node could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// Device node.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Finds the port called `port_name` (waiting for it) and serves requests on it forever.
///
/// Read errors other than the host's state (say the port was unplugged) make it look the port
/// up and open it again.
pub fn serve(port_name: &str) -> Result<Infallible, ServeError> {
    loop {
        let path = wait_for_port(port_name, DISCONNECTED_POLL);
        let port = open(&path)?;
        eprintln!("serving {port_name} on {}", path.display());
        let e = serve_port(&port);
        eprintln!("{}: {e}; opening it again", path.display());
        thread::sleep(Duration::from_secs(1));
    }
}

fn open(path: &Path) -> Result<File, ServeError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| ServeError::Open {
            path: path.into(),
            source,
        })
}

/// Serves until a read fails for a reason other than the host's state.
fn serve_port(mut port: &File) -> io::Error {
    let mut session = Session::default();
    let mut link = Link::default();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match port.read(&mut chunk) {
            Ok(0) => {
                if link.disconnected() {
                    session.hang_up();
                }
                thread::sleep(DISCONNECTED_POLL);
            }
            Ok(n) => {
                link.data();
                for line in session.push(&chunk[..n]) {
                    if let Some(reply) = handle_line(&line) {
                        if let Err(e) = write_reply(port, &reply) {
                            eprintln!("reply {} dropped: {e}", reply.id);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                link.connected();
                match wait(port, PollFlags::POLLIN, PollTimeout::NONE) {
                    Ok(revents) if revents.contains(PollFlags::POLLHUP) => {
                        if link.disconnected() {
                            session.hang_up();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => return e,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return e,
        }
    }
}

/// What the agent believes about the host connection (see the module docs).
#[derive(Debug, Default)]
struct Link {
    /// The driver said a host is connected since the last believed hang-up.
    seen_connected: bool,
    /// Since when the driver has been saying no host is connected.
    down_since: Option<Instant>,
    /// The current connection's data was already discarded.
    discarded: bool,
}

impl Link {
    fn connected(&mut self) {
        self.seen_connected = true;
        self.down_since = None;
        self.discarded = false;
    }

    fn data(&mut self) {
        self.down_since = None;
        self.discarded = false;
    }

    /// The driver says no host is connected; true when that is a hang-up to act on (once).
    fn disconnected(&mut self) -> bool {
        let since = *self.down_since.get_or_insert_with(Instant::now);
        if self.discarded {
            return false;
        }
        if self.seen_connected || since.elapsed() >= HANG_UP_GRACE {
            self.seen_connected = false;
            self.discarded = true;
            return true;
        }
        false
    }
}

/// Writes one reply line; fails if the host hangs up or stops reading.
fn write_reply(mut port: &File, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    let deadline = Instant::now() + WRITE_DEADLINE;
    let mut hung_up: Option<Instant> = None;
    let mut rest = &line[..];
    while !rest.is_empty() {
        match port.write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the host stopped reading",
                    ));
                }
                let revents = wait(port, PollFlags::POLLOUT, PollTimeout::from(200u16))?;
                if revents.contains(PollFlags::POLLHUP) {
                    let down = *hung_up.get_or_insert_with(Instant::now);
                    if down.elapsed() >= HANG_UP_GRACE {
                        return Err(io::Error::new(
                            io::ErrorKind::BrokenPipe,
                            "the host hung up",
                        ));
                    }
                    // POLLHUP returns at once: do not spin.
                    thread::sleep(DISCONNECTED_POLL);
                } else {
                    hung_up = None;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    port.flush()
}

fn wait(port: &File, events: PollFlags, timeout: PollTimeout) -> io::Result<PollFlags> {
    let mut fds = [PollFd::new(port.as_fd(), events)];
    match nix::poll::poll(&mut fds, timeout) {
        Ok(_) => Ok(fds[0].revents().unwrap_or(PollFlags::empty())),
        Err(nix::errno::Errno::EINTR) => Ok(PollFlags::empty()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_splits_lines_and_forgets_partial_ones_on_hang_up() {
        let mut s = Session::default();
        assert!(s.push(b"{\"id\":1,").is_empty());
        assert_eq!(
            s.push(b"\"op\":\"ping\"}\n{\"id\":2"),
            vec![b"{\"id\":1,\"op\":\"ping\"}".to_vec()]
        );
        s.hang_up();
        assert_eq!(
            s.push(b"{\"id\":3}\n\n"),
            vec![b"{\"id\":3}".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn hang_ups_are_believed_once_seen_connected_or_after_the_grace() {
        let mut link = Link::default();
        link.data();
        assert!(
            !link.disconnected(),
            "data before the open message is not a hang-up"
        );
        link.connected();
        assert!(link.disconnected());
        assert!(!link.disconnected(), "acted on once");
        let mut link = Link::default();
        link.data();
        assert!(!link.disconnected());
        thread::sleep(HANG_UP_GRACE);
        assert!(link.disconnected());
        assert!(!link.disconnected());
        link.data();
        link.connected();
        assert!(link.disconnected());
    }

    #[test]
    fn handle_line_answers_bad_requests_with_their_id() {
        assert!(handle_line(b"  \r").is_none());
        let ping = handle_line(b"{\"id\":5,\"op\":\"ping\"}\r").unwrap();
        assert!(ping.ok && ping.id == 5 && ping.result.contains_key("version"));
        let bad = handle_line(b"{\"id\":6,\"op\":\"fly\"}").unwrap();
        assert!(!bad.ok && bad.id == 6 && bad.error.unwrap().contains("invalid request"));
        let garbage = handle_line(b"not json").unwrap();
        assert_eq!((garbage.ok, garbage.id), (false, 0));
    }
}
