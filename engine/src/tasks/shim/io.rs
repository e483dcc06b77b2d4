//! A process's stdio in the shim ([`ProcIo`]): stdout and stderr go through pipes — or the
//! terminal's master, with `-t` — into a size-capped log file (`log`, one rotation to
//! `log.1`) and to the clients attached over the API ([`super::output`]); stdin is
//! `/dev/null`, or with `-i` a pipe the shim keeps open and attached clients write into.
//! Copying runs on plain threads, which the executor's clone() tolerates (see
//! [`super::process`]). No path a client names is ever opened: stdio travels over the API
//! (`Tasks.Attach`), never through client-side FIFOs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::io::unix::AsyncFd;

use super::console::{resize, ConsoleSocket};
use super::output::{Output, Stream};

use crate::tasks::Error;

/// Largest container log file before it is rotated to `log.1`.
pub const LOG_CAP: u64 = 1 << 20;

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
        what: "create a pipe".into(),
        source: e.into(),
    })
}

/// The size-capped container log shared by the output copiers.
pub struct Log {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Log {
    pub fn open(path: PathBuf) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&path)
            .ok();
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        Self { path, file, size }
    }

    pub fn write(&mut self, data: &[u8]) {
        if self.size + data.len() as u64 > LOG_CAP {
            let _ = std::fs::rename(&self.path, self.path.with_extension("1"));
            *self = Self::open(self.path.clone());
            self.size = 0;
        }
        if let Some(f) = &mut self.file {
            if f.write_all(data).is_ok() {
                self.size += data.len() as u64;
            }
        }
    }
}

/// The fds a new process gets (the shim's copies are dropped once the process has them),
/// and, with a terminal, the console socket its runtime sends the pty master to.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub console: Option<ConsoleSocket>,
}

/// The shim's side of a process's stdin: the pipe's write end, or a dup of the terminal's
/// master; non-blocking, registered with the async runtime on first use.
#[derive(Default)]
struct StdinSink {
    raw: Option<OwnedFd>,
    fd: Option<AsyncFd<OwnedFd>>,
}

/// The stdio of one process as the shim holds it: its output hub, its stdin (when open) and
/// its terminal's master (with a terminal).
pub struct ProcIo {
    /// The process has a terminal: one output stream, input through the master.
    pub terminal: bool,
    /// The process's stdin is open to attached clients (`-i`).
    pub stdin_open: bool,
    pub output: Arc<Output>,
    stdin: tokio::sync::Mutex<StdinSink>,
    master: OnceLock<OwnedFd>,
    /// The last window size asked for: applied when the master comes (an exec's terminal
    /// exists only once it starts, after its client attached).
    size: Mutex<Option<(u16, u16)>>,
    /// The init's output is also written here in kubelet's format (`Tasks.Create`
    /// `log_path`; execs have none).
    cri: Option<Arc<super::cri_log::CriLog>>,
}

fn dev_null() -> Result<OwnedFd, Error> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?
        .into())
}

impl ProcIo {
    /// The stdio of a process to be created with stdin open (`stdin`) and a terminal, its
    /// output also in the CRI log `cri` when given.
    pub fn new(
        stdin: bool,
        terminal: bool,
        cri: Option<Arc<super::cri_log::CriLog>>,
    ) -> Result<Arc<Self>, Error> {
        Ok(Arc::new(Self {
            terminal,
            stdin_open: stdin,
            output: Output::new(if terminal { 1 } else { 2 })?,
            stdin: tokio::sync::Mutex::new(StdinSink::default()),
            master: OnceLock::new(),
            size: Mutex::new(None),
            cri,
        }))
    }

    /// Makes the process's ends: pipes whose shim ends are copied from now on, or, with a
    /// terminal, `/dev/null` and a console socket named `console` in `dir` (the runtime
    /// replaces the process's stdio with the pty's slave).
    pub fn prepare(
        &self,
        dir: &Path,
        console: &str,
        log: &Arc<Mutex<Log>>,
        copiers: &mut Vec<std::thread::JoinHandle<()>>,
    ) -> Result<ChildStdio, Error> {
        if self.terminal {
            return Ok(ChildStdio {
                stdin: dev_null()?,
                stdout: dev_null()?,
                stderr: dev_null()?,
                console: Some(ConsoleSocket::bind(dir, console)?),
            });
        }
        let stdin = if self.stdin_open {
            let (r, w) = pipe()?;
            let _ = super::output::set_nonblocking(&w);
            self.sink().raw = Some(w);
            r
        } else {
            dev_null()?
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        copiers.push(
            self.output
                .copy(out_r, Stream::Stdout, log.clone(), self.cri.clone()),
        );
        copiers.push(
            self.output
                .copy(err_r, Stream::Stderr, log.clone(), self.cri.clone()),
        );
        Ok(ChildStdio {
            stdin,
            stdout: out_w,
            stderr: err_w,
            console: None,
        })
    }

    /// The sink, from synchronous setup code (nothing else holds it yet).
    fn sink(&self) -> tokio::sync::MutexGuard<'_, StdinSink> {
        self.stdin
            .try_lock()
            .expect("the stdin sink is free during setup")
    }

    /// Takes the terminal's master the runtime sent: its output is copied from now on, and
    /// stdin (when open) is written into it.
    pub fn set_master(
        &self,
        master: OwnedFd,
        log: &Arc<Mutex<Log>>,
        copiers: &mut Vec<std::thread::JoinHandle<()>>,
    ) -> Result<(), Error> {
        let _ = super::output::set_nonblocking(&master);
        let dup = |f: &OwnedFd| f.try_clone().map_err(io_err("dup the pty master"));
        if self.stdin_open {
            self.sink().raw = Some(dup(&master)?);
        }
        copiers.push(self.output.copy(
            dup(&master)?,
            Stream::Stdout,
            log.clone(),
            self.cri.clone(),
        ));
        // Under the size lock, so a resize racing with this lands on the terminal.
        let size = self.size.lock().expect("size lock");
        if let Some((w, h)) = *size {
            let _ = resize(&master, w, h);
        }
        let _ = self.master.set(master);
        Ok(())
    }

    /// Sets the terminal's window size, now or when the terminal comes (a process without
    /// a terminal has none).
    pub fn resize(&self, width: u16, height: u16) -> Result<(), Error> {
        if !self.terminal {
            return Err(Error::FailedPrecondition(
                "the process has no terminal".into(),
            ));
        }
        let mut size = self.size.lock().expect("size lock");
        *size = Some((width, height));
        match self.master.get() {
            Some(m) => resize(m, width, height),
            None => Ok(()),
        }
    }

    /// Writes `data` to the process's stdin, waiting while its pipe (or terminal) is full.
    /// Writers are served one at a time, each message whole.
    pub async fn write_stdin(&self, data: &[u8]) -> Result<(), Error> {
        let mut s = self.stdin.lock().await;
        if s.fd.is_none() {
            if let Some(raw) = s.raw.take() {
                // SAFETY: `raw` is an owned, valid descriptor that the AsyncFd owns from now
                // on; nothing closes or replaces it behind the registration.
                let fd = unsafe { AsyncFd::register(raw) };
                s.fd = Some(fd.map_err(|e| io_err("watch the stdin pipe")(e.into()))?);
            }
        }
        let Some(fd) = s.fd.as_ref() else {
            return Err(Error::FailedPrecondition("stdin is closed".into()));
        };
        let mut off = 0;
        while off < data.len() {
            let mut guard = fd.writable().await.map_err(io_err("wait for stdin"))?;
            match guard.try_io(|f| {
                nix::unistd::write(f.get_ref(), &data[off..]).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => off += n,
                Ok(Err(e)) => return Err(io_err("write to the process's stdin")(e)),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Ends the process's input: closes the stdin pipe (the process reads end of file), or
    /// on a terminal writes its end-of-file character (^D, which a terminal in canonical
    /// mode turns into end of file).
    pub async fn close_stdin(&self) -> Result<(), Error> {
        if self.terminal {
            return self.write_stdin(&[4]).await;
        }
        let mut s = self.stdin.lock().await;
        s.fd = None;
        s.raw = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_log_rotates_at_its_cap() {
        let d = tempfile::tempdir().unwrap();
        let mut log = Log::open(d.path().join("log"));
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(LOG_CAP / chunk.len() as u64) {
            log.write(&chunk);
        }
        assert_eq!(
            std::fs::metadata(d.path().join("log")).unwrap().len(),
            LOG_CAP
        );
        log.write(b"next\n");
        assert_eq!(std::fs::read(d.path().join("log")).unwrap(), b"next\n");
        assert_eq!(
            std::fs::metadata(d.path().join("log.1")).unwrap().len(),
            LOG_CAP
        );
    }
}
