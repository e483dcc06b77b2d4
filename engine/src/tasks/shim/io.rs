//! A process's stdio in the shim: stdout and stderr go through pipes into a size-capped log
//! file (`log`, one rotation to `log.1`) and, when berthd passed FIFO paths, to the client's
//! FIFOs; stdin comes from a FIFO or `/dev/null`. Copying runs on plain threads, which the
//! executor's clone() tolerates (see [`super::process`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// Opens FIFO `path` for writing, waiting up to 10 s for its reader.
fn open_fifo_writer(path: &str) -> Option<File> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(f) => {
                let _ = nix::fcntl::fcntl(
                    f.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                );
                return Some(f);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if std::time::Instant::now() > deadline {
                    tracing::warn!(fifo = path, "no reader came: output goes to the log only");
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::warn!(fifo = path, "cannot open: {e}");
                return None;
            }
        }
    }
}

/// The size-capped container log shared by the output copiers.
pub(super) struct Log {
    path: PathBuf,
    file: Option<File>,
    size: u64,
}

impl Log {
    pub(super) fn open(path: PathBuf) -> Self {
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

    pub(super) fn write(&mut self, data: &[u8]) {
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

/// The CRI log a copier also feeds (the init's output only), and which stream it copies.
pub(super) type CriOut = Option<(Arc<super::cri_log::CriLog>, super::cri_log::Stream)>;

/// Copies `from` into the log, the CRI log and the FIFO (each when given); returns when
/// `from` ends.
fn copy_out(
    from: OwnedFd,
    fifo: String,
    log: Arc<Mutex<Log>>,
    cri: CriOut,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut cri = cri.map(|(l, s)| (l, super::cri_log::Lines::new(s)));
        let mut from = File::from(from);
        let mut to = if fifo.is_empty() {
            None
        } else {
            open_fifo_writer(&fifo)
        };
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            log.lock().expect("log lock").write(&buf[..n]);
            if let Some((l, lines)) = &mut cri {
                lines.feed(l, &buf[..n]);
            }
            if let Some(t) = &mut to {
                if t.write_all(&buf[..n]).is_err() {
                    to = None; // the reader went away; keep logging
                }
            }
        }
        if let Some((l, lines)) = &mut cri {
            lines.finish(l);
        }
    })
}

/// Copies FIFO `path` into `to` until the writer closes it.
fn copy_in(path: String, to: OwnedFd) {
    std::thread::spawn(move || {
        let mut to = File::from(to);
        if let Ok(mut from) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            let _ = std::io::copy(&mut from, &mut to);
        }
    });
}

/// Stdio of one process: the fds it gets, and the shim's ends set to copying.
pub(super) struct Stdio {
    pub(super) stdin: OwnedFd,
    pub(super) stdout: OwnedFd,
    pub(super) stderr: OwnedFd,
}

/// Sets up the stdio of one process (FIFO paths, empty: none) and starts its copiers.
pub(super) fn stdio(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    log: &Arc<Mutex<Log>>,
    cri: Option<&Arc<super::cri_log::CriLog>>,
    copiers: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<Stdio, Error> {
    use super::cri_log::Stream;
    let child_in: OwnedFd = if stdin.is_empty() {
        File::open("/dev/null")
            .map_err(io_err("open /dev/null"))?
            .into()
    } else {
        let (r, w) = pipe()?;
        copy_in(stdin.to_owned(), w);
        r
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    copiers.push(copy_out(
        out_r,
        stdout.to_owned(),
        log.clone(),
        cri.map(|c| (c.clone(), Stream::Stdout)),
    ));
    copiers.push(copy_out(
        err_r,
        stderr.to_owned(),
        log.clone(),
        cri.map(|c| (c.clone(), Stream::Stderr)),
    ));
    Ok(Stdio {
        stdin: child_in,
        stdout: out_w,
        stderr: err_w,
    })
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
