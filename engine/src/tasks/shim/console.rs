//! Terminals (`-t`): the pty is created *inside* the container — by the container's init, or
//! by the process an exec starts — on the container's own devpts, and its master comes back
//! to the shim over a console socket (the OCI runtime's `--console-socket` protocol: one
//! connection, one `SCM_RIGHTS` message). That keeps the host's `/dev/pts` out of the
//! container (runc and containerd do the same). The shim holds the master: it copies the
//! terminal's output into the log and to attached clients, writes their input into it, and
//! sets its window size.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::io::io_err;
use crate::tasks::Error;

/// How long the shim waits for a master after the runtime reported the process created.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening console socket in the shim's directory.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens on `<dir>/<name>` (a short name: unix socket paths are limited to 107 bytes
    /// and the directory is long already; see `shim.sock`).
    pub fn bind(dir: &Path, name: &str) -> Result<Self, Error> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).map_err(io_err(format!("listen on {}", path.display())))?;
        Ok(Self { listener, path })
    }

    /// The path to hand the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal master the runtime sent (it connected while creating the process, before
    /// it reported the process created: the connection waits in the backlog).
    pub fn receive(self) -> Result<OwnedFd, Error> {
        let r = self.receive_inner();
        let _ = std::fs::remove_file(&self.path);
        r
    }

    fn receive_inner(&self) -> Result<OwnedFd, Error> {
        let fail = |what: &str| Error::Executor(format!("terminal: {what}"));
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(RECEIVE_TIMEOUT.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Err(fail("the runtime sent no pty master within 10 s")),
            Ok(_) => {}
            Err(e) => return Err(fail(&format!("poll the console socket: {e}"))),
        }
        let (conn, _) = self
            .listener
            .accept()
            .map_err(io_err("accept on the console socket"))?;
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| fail(&format!("receive the pty master: {e}")))?;
        let mut master = None;
        for c in msg.cmsgs().map_err(|e| fail(&e.to_string()))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS installed `fd` in this process just now; nothing
                    // else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(owned);
                    }
                }
            }
        }
        let master = master.ok_or_else(|| fail("the console socket message carried no fd"))?;
        if !nix::unistd::isatty(master.as_raw_fd()).unwrap_or(false) {
            return Err(fail(
                "the fd received on the console socket is not a terminal",
            ));
        }
        Ok(master)
    }
}

/// Sets the window size of the terminal whose master is `fd` (the process gets SIGWINCH).
pub fn resize(fd: &impl AsFd, width: u16, height: u16) -> Result<(), Error> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        return Err(Error::Io {
            what: "set the terminal's window size".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_master_sent_on_the_socket_is_received_and_resized() {
        let d = tempfile::tempdir().unwrap();
        let sock = ConsoleSocket::bind(d.path(), "t.sock").unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        // What a runtime does: connect, send the master with SCM_RIGHTS.
        let c = std::os::unix::net::UnixStream::connect(sock.path()).unwrap();
        let fds = [pty.master.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            c.as_raw_fd(),
            &[std::io::IoSlice::new(b"/dev/ptmx")],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let path = sock.path().to_owned();
        let master = sock.receive().unwrap();
        assert!(!path.exists());
        resize(&master, 91, 17).unwrap();
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the valid pointer.
        let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(r, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (91, 17));
    }
}
