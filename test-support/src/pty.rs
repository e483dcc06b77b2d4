//! A program driven through a real pseudo-terminal, as a person at a terminal would: the
//! program gets the pty's slave as its controlling terminal (stdin, stdout, stderr), the test
//! writes keys to the master and reads what the program shows. Used to test `berthctl run
//! -it`, `tasks exec -it` and `tasks attach -it` on the host and through the QEMU bridge.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process on a pty.
pub struct Pty {
    master: File,
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn winsize(cols: u16, rows: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

impl Pty {
    /// Starts `cmd` in a new session whose controlling terminal is a new pty of `cols` x
    /// `rows`.
    pub fn spawn(mut cmd: Command, cols: u16, rows: u16) -> std::io::Result<Pty> {
        let pty = nix::pty::openpty(Some(&winsize(cols, rows)), None)?;
        let slave: OwnedFd = pty.slave;
        cmd.stdin(slave.try_clone()?)
            .stdout(slave.try_clone()?)
            .stderr(slave.try_clone()?);
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(slave);
        drop(cmd);
        let master = File::from(pty.master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let (mut m, seen) = (master.try_clone()?, seen.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                // EIO once the child and everything it started closed the slave.
                while let Ok(n) = m.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        Ok(Pty {
            master,
            child,
            seen,
            reader: Some(reader),
        })
    }

    /// Types `keys`.
    pub fn write(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Everything the program showed so far, as text.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Waits until the program showed `text` after the first `after` bytes of its output;
    /// returns the output's length then. Panics with what it showed after `timeout`.
    pub fn expect(&self, after: usize, text: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let tail = String::from_utf8_lossy(&seen[after.min(seen.len())..]).into_owned();
                if tail.contains(text) {
                    return seen.len();
                }
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not show within {timeout:?}; the terminal showed:\n{:?}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How much output came so far.
    pub fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Whether no output came yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resizes the terminal (the program gets SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let ws = winsize(cols, rows);
        // SAFETY: TIOCSWINSZ reads one `winsize` from the valid pointer.
        let r = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// The pid of the program.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the program to exit (panics after `timeout`, killing it).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(r) = self.reader.take() {
                    // The reader ends with the last slave; a container's leftovers must not
                    // hold the test forever.
                    let end = Instant::now() + Duration::from_secs(2);
                    while !r.is_finished() && Instant::now() < end {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the program on the pty did not exit within {timeout:?}; it showed:\n{:?}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
