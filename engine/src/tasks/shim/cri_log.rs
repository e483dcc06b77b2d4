//! The container's output in kubelet's CRI log format, at the path CRI gave at task creation
//! (`CreateTaskRequest.log_path`, under the pod's log directory): one line per line of output,
//!
//! ```text
//! 2026-12-08T10:11:12.123456789Z stdout F hello
//! 2026-12-08T10:11:12.123456789Z stderr P the first 16 KiB of a longer line…
//! ```
//!
//! (RFC 3339 timestamp with nanoseconds, the stream, `F` for a full line or `P` for a part of
//! one, the content without its newline) — kubelet's `crictl logs`/`kubectl logs` parser and
//! critest read it. Like containerd's CRI (`pkg/cri/io/logger.go`): a line longer than
//! [`MAX_LINE`] is cut into `P` parts, and what is left without a newline when the stream
//! ends is written as a full line.
//!
//! A separate writer the output copier feeds (the init's stdout and stderr only: exec'd
//! processes' output is the exec stream's, not the container's log). kubelet rotates the file
//! by renaming it and then asks for [`CriLog::reopen`] (`ReopenContainerLog` →
//! `Tasks.ReopenLog` → the shim): the next line goes to a new file at the path.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// The longest line written as one entry (containerd's `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The CRI log file of a container; shared by its stdout and stderr copiers.
pub struct CriLog {
    path: PathBuf,
    file: Mutex<File>,
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl CriLog {
    /// Opens (creates, appends to) the log at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(open(path)?),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (after kubelet renamed the file to rotate it); the next entry
    /// goes to the new file.
    pub fn reopen(&self) -> std::io::Result<()> {
        let f = open(&self.path)?;
        *self.file.lock().expect("cri log lock") = f;
        Ok(())
    }

    /// Writes one entry: `content` must not contain a newline.
    fn entry(&self, stream: Stream, full: bool, content: &[u8]) {
        let mut line = Vec::with_capacity(content.len() + 48);
        line.extend_from_slice(berth_api::time::rfc3339_nano(SystemTime::now()).as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_str().as_bytes());
        line.extend_from_slice(if full { b" F " } else { b" P " });
        line.extend_from_slice(content);
        line.push(b'\n');
        // One write per entry: the two streams' entries never interleave within a line.
        let mut f = self.file.lock().expect("cri log lock");
        if let Err(e) = f.write_all(&line) {
            tracing::warn!(path = %self.path.display(), "cannot write the CRI log: {e}");
        }
    }
}

/// One stream's cutting of output chunks into entries.
pub struct Lines {
    stream: Stream,
    pending: Vec<u8>,
}

impl Lines {
    /// A stream with nothing pending.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    /// Feeds a chunk of output: every completed line is written as `F`, a pending part that
    /// reached [`MAX_LINE`] as `P`.
    pub fn feed(&mut self, log: &CriLog, mut data: &[u8]) {
        while let Some(nl) = data.iter().position(|b| *b == b'\n') {
            let (line, rest) = data.split_at(nl);
            self.pending.extend_from_slice(line);
            self.flush_parts(log);
            log.entry(self.stream, true, &self.pending);
            self.pending.clear();
            data = &rest[1..];
        }
        self.pending.extend_from_slice(data);
        self.flush_parts(log);
    }

    /// Writes whole [`MAX_LINE`] parts of the pending line as `P` entries.
    fn flush_parts(&mut self, log: &CriLog) {
        while self.pending.len() > MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            log.entry(self.stream, false, &self.pending);
            self.pending = rest;
        }
    }

    /// The stream ended: what is left is written as a full line.
    pub fn finish(&mut self, log: &CriLog) {
        if !self.pending.is_empty() {
            log.entry(self.stream, true, &self.pending);
            self.pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(path: &Path) -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let mut f = l.splitn(4, ' ');
                let ts = f.next().unwrap();
                assert!(ts.ends_with('Z') && ts.len() == 30, "{ts}");
                (
                    f.next().unwrap().to_owned(),
                    f.next().unwrap().to_owned(),
                    f.next().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_partials_and_the_end_of_a_stream() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let log = CriLog::open(&path).unwrap();
        let (mut out, mut err) = (Lines::new(Stream::Stdout), Lines::new(Stream::Stderr));
        out.feed(&log, b"hel");
        err.feed(&log, b"oops\n");
        out.feed(&log, b"lo\n\nworld");
        let long = vec![b'x'; MAX_LINE + 10];
        err.feed(&log, &long);
        err.feed(&log, b"\n");
        out.finish(&log);
        err.finish(&log);
        let e = entries(&path);
        let want: Vec<(String, String, String)> = [
            ("stderr", "F", "oops".to_owned()),
            ("stdout", "F", "hello".to_owned()),
            ("stdout", "F", String::new()),
            ("stderr", "P", "x".repeat(MAX_LINE)),
            ("stderr", "F", "x".repeat(10)),
            ("stdout", "F", "world".to_owned()),
        ]
        .into_iter()
        .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c))
        .collect();
        assert_eq!(e, want);
    }

    #[test]
    fn reopen_follows_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let log = CriLog::open(&path).unwrap();
        let mut out = Lines::new(Stream::Stdout);
        out.feed(&log, b"one\n");
        std::fs::rename(&path, d.path().join("0.log.1")).unwrap();
        out.feed(&log, b"two\n");
        log.reopen().unwrap();
        out.feed(&log, b"three\n");
        assert_eq!(entries(&d.path().join("0.log.1")).len(), 2);
        assert_eq!(entries(&path)[0].2, "three");
    }
}
