//! The API bridge: a virtio-serial port (`org.berth.api`) shuttled to berthd's unix socket.
//!
//! The port is one byte stream with no framing of clients. virtio_console reports `POLLHUP`
//! on the port while no host client is connected (and `read` returns 0), so: open the berthd
//! connection lazily when host data arrives, drop it when the host hangs up, and while the
//! host stays away re-check every 50 ms instead of spinning on the persistent `POLLHUP`.
//! If berthd is down, the host's data is dropped and the next request connects again.
//! One thread, `poll(2)`, no async runtime: PID 1 stays small.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::console::Console;

/// Errors of the bridge.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The port device cannot be opened.
    #[error("cannot open {path}: {source}", path = path.display())]
    Open {
        /// The device.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading or polling the port failed.
    #[error("virtio port I/O failed: {0}")]
    Port(#[source] std::io::Error),
}

/// While the host is away, re-check the port this often.
const HANGUP_RECHECK: Duration = Duration::from_millis(50);
/// Wait this long on a full port before giving up on a reply.
const PORT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the device name (`vport0p1`) of the virtio-serial port called `name`, looking in
/// `class_dir` (`/sys/class/virtio-ports`).
pub fn find_port(class_dir: &Path, name: &str) -> Option<String> {
    let entries = std::fs::read_dir(class_dir).ok()?;
    entries.flatten().find_map(|entry| {
        let port_name = std::fs::read_to_string(entry.path().join("name")).ok()?;
        (port_name.trim() == name).then(|| entry.file_name().to_string_lossy().into_owned())
    })
}

/// Waits up to `wait` for port `name` to appear (virtio_console adds ports asynchronously)
/// and returns its `/dev` path.
pub fn wait_for_port(name: &str, wait: Duration) -> Option<PathBuf> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(dev) = find_port(Path::new("/sys/class/virtio-ports"), name) {
            let path = Path::new("/dev").join(dev);
            if path.exists() {
                return Some(path);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The filesystem path of a berthd address (`unix:///run/x.sock` or a bare path).
pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Starts the bridge thread for port `name` to `address`. Reports at info level, once, if
/// the port does not exist.
pub fn spawn(name: String, address: String, wait: Duration, console: Console) {
    let spawned = std::thread::Builder::new()
        .name("bridge".into())
        .spawn(move || {
            let Some(path) = wait_for_port(&name, wait) else {
                console.info(&format!("no virtio port {name}; API bridge disabled"));
                return;
            };
            let socket = PathBuf::from(socket_path(&address));
            loop {
                match open_port(&path) {
                    Ok(mut port) => {
                        console.debug(&format!(
                            "bridging {} ({name}) to {}",
                            path.display(),
                            socket.display()
                        ));
                        let mut connect = || UnixStream::connect(&socket);
                        if let Err(err) = run(&mut port, &mut connect, &|| false, console) {
                            console.warn(&format!("API bridge: {err}; reopening"));
                        }
                    }
                    Err(err) => console.warn(&format!("API bridge: {err}")),
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(err) = spawned {
        console.error(&format!("cannot start the API bridge thread: {err}"));
    }
}

fn open_port(path: &Path) -> Result<std::fs::File, BridgeError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| BridgeError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Shuttles bytes between `port` (non-blocking) and connections made by `connect`, until
/// `stop` says so or the port fails. Factored over the port type so tests can use a
/// socketpair, whose hang-up semantics match virtio_console's.
pub fn run<P, C>(
    port: &mut P,
    connect: &mut C,
    stop: &dyn Fn() -> bool,
    console: Console,
) -> Result<(), BridgeError>
where
    P: AsFd + Read + Write,
    C: FnMut() -> std::io::Result<UnixStream>,
{
    let mut conn: Option<UnixStream> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut berthd_down_reported = false;
    while !stop() {
        let (port_ev, conn_ev) = {
            let mut fds = vec![PollFd::new(port.as_fd(), PollFlags::POLLIN)];
            if let Some(c) = &conn {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::from(500u16)) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(errno) => return Err(BridgeError::Port(errno.into())),
            }
            let ev = |fd: &PollFd| fd.revents().unwrap_or(PollFlags::empty());
            (
                ev(&fds[0]),
                fds.get(1).map(ev).unwrap_or(PollFlags::empty()),
            )
        };

        // Host side gone: forget the berthd connection, then wait for the next client.
        // Unread bytes are left alone: they may already be the next client's request (a
        // quick reconnect clears POLLHUP before we look again), and draining them here
        // would lose it.
        if port_ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            if conn.take().is_some() {
                console.debug("API bridge: host hung up; berthd connection closed");
            }
            std::thread::sleep(HANGUP_RECHECK);
            continue;
        }

        if port_ev.contains(PollFlags::POLLIN) {
            match port.read(&mut buf) {
                Ok(0) => {
                    conn = None;
                    std::thread::sleep(HANGUP_RECHECK);
                    continue;
                }
                Ok(n) => {
                    if conn.is_none() {
                        match connect() {
                            Ok(c) => {
                                let _ = c.set_write_timeout(Some(Duration::from_secs(5)));
                                conn = Some(c);
                                berthd_down_reported = false;
                            }
                            Err(err) => {
                                if !berthd_down_reported {
                                    console.warn(&format!(
                                        "API bridge: cannot reach berthd: {err}; dropping request"
                                    ));
                                    berthd_down_reported = true;
                                }
                            }
                        }
                    }
                    if let Some(c) = &mut conn {
                        if c.write_all(&buf[..n]).is_err() {
                            conn = None;
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(BridgeError::Port(e)),
            }
        }

        if conn_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            if let Some(c) = &mut conn {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => conn = None,
                    Ok(n) => {
                        if !write_port(port, &buf[..n]) {
                            conn = None;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes all of `data` to the non-blocking port, waiting for room; false if the host went
/// away or the port stayed full.
fn write_port<P: AsFd + Write>(port: &mut P, mut data: &[u8]) -> bool {
    let deadline = Instant::now() + PORT_WRITE_TIMEOUT;
    while !data.is_empty() {
        match port.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return false;
                }
                let mut fds = [PollFd::new(port.as_fd(), PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
                if fds[0]
                    .revents()
                    .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
                {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn quiet() -> Console {
        Console::new(crate::console::Level::Error)
    }

    /// Runs the bridge on one end of a socketpair (the "port"), returning the host end.
    fn start(socket: PathBuf, stop: Arc<AtomicBool>) -> (UnixStream, std::thread::JoinHandle<()>) {
        let (host, mut port) = UnixStream::pair().unwrap();
        port.set_nonblocking(true).unwrap();
        let handle = std::thread::spawn(move || {
            let mut connect = || UnixStream::connect(&socket);
            run(
                &mut port,
                &mut connect,
                &|| stop.load(Ordering::SeqCst),
                quiet(),
            )
            .unwrap();
        });
        (host, handle)
    }

    #[test]
    fn shuttles_both_ways_and_drops_berthd_on_hangup() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("berthd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut host, handle) = start(socket, Arc::clone(&stop));

        host.write_all(b"ping").unwrap();
        let (mut berthd, _) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        berthd.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        berthd.write_all(b"pong").unwrap();
        host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");

        // Host hangs up: the bridge must close its berthd connection.
        drop(host);
        berthd
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            berthd.read(&mut got).unwrap(),
            0,
            "berthd connection should be closed"
        );

        stop.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn berthd_down_drops_data_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("berthd.sock");
        let stop = Arc::new(AtomicBool::new(false));
        let (mut host, handle) = start(socket.clone(), Arc::clone(&stop));

        host.write_all(b"lost").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let listener = UnixListener::bind(&socket).unwrap();
        host.write_all(b"kept").unwrap();
        let (mut berthd, _) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        berthd.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"kept");

        // berthd closes: the next request opens a new connection.
        drop(berthd);
        std::thread::sleep(Duration::from_millis(200));
        host.write_all(b"next").unwrap();
        let (mut berthd, _) = listener.accept().unwrap();
        berthd.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"next");

        stop.store(true, Ordering::SeqCst);
        handle.join().unwrap();
    }

    #[test]
    fn finds_ports_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (dev, name) in [
            ("vport0p1", berth_layout::ports::TEST),
            ("vport0p2", berth_layout::ports::API),
        ] {
            std::fs::create_dir(dir.path().join(dev)).unwrap();
            std::fs::write(dir.path().join(dev).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(
            find_port(dir.path(), berth_layout::ports::API).as_deref(),
            Some("vport0p2")
        );
        assert_eq!(find_port(dir.path(), "nope"), None);
        assert_eq!(
            socket_path("unix:///run/berth/berthd.sock"),
            "/run/berth/berthd.sock"
        );
        assert_eq!(socket_path("/run/x.sock"), "/run/x.sock");
    }
}
