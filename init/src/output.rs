//! Service output: each line a service writes to stdout or stderr is forwarded to the
//! console as `[uptime] <service>: <line>`, and the last one is kept for error messages
//! (so "berthd cannot start" can say why).

use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::console::Console;

/// Longest line kept whole; longer ones are cut into pieces of this size.
pub const MAX_LINE: usize = 4096;

/// Splits a byte stream into lines (without the newline; `\r\n` too), lossily decoded.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the lines they complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in data {
            if b == b'\n' {
                lines.push(self.take());
            } else {
                self.buf.push(b);
                if self.buf.len() >= MAX_LINE {
                    lines.push(self.take());
                }
            }
        }
        lines
    }

    /// The unterminated rest at end of stream, if any.
    pub fn finish(&mut self) -> Option<String> {
        (!self.buf.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = std::mem::take(&mut self.buf);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

/// The last lines a service run wrote, shared between its forwarders and the supervisor.
#[derive(Debug, Default)]
pub struct LastLines {
    /// Last non-empty stderr line.
    pub stderr: Option<String>,
    /// Last non-empty line on either stream.
    pub any: Option<String>,
}

impl LastLines {
    /// The line that best explains a failure: stderr's, else stdout's.
    pub fn best(&self) -> Option<&str> {
        self.stderr.as_deref().or(self.any.as_deref())
    }
}

/// Which stream a forwarder reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Copies `reader` to the console line by line until end of stream, prefixing `name`, and
/// records the last lines in `last`. Runs on its own thread; `on_eof` is called at the end.
pub fn forward<R: Read>(
    mut reader: R,
    name: &str,
    stream: Stream,
    console: Console,
    last: &Arc<Mutex<LastLines>>,
) {
    let mut splitter = LineSplitter::default();
    let mut buf = [0u8; 4096];
    // A service that names itself (`berthd: error: …`) is not named twice on the console.
    let own_prefix = format!("{name}: ");
    let mut emit = |line: String| {
        let line = match line.strip_prefix(&own_prefix) {
            Some(rest) => rest.to_string(),
            None => line,
        };
        console.service_line(name, &line);
        if !line.trim().is_empty() {
            if let Ok(mut last) = last.lock() {
                if stream == Stream::Stderr {
                    last.stderr = Some(line.clone());
                }
                last.any = Some(line);
            }
        }
    };
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n]).into_iter().for_each(&mut emit),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if let Some(line) = splitter.finish() {
        emit(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_naming_itself_is_not_named_twice() {
        let last = Arc::new(Mutex::new(LastLines::default()));
        let console = Console::new(crate::console::Level::Error);
        forward(
            &b"berthd: error: bad\n"[..],
            "berthd",
            Stream::Stderr,
            console,
            &last,
        );
        assert_eq!(last.lock().unwrap().stderr.as_deref(), Some("error: bad"));
        forward(&b"other: x\n"[..], "berthd", Stream::Stderr, console, &last);
        assert_eq!(last.lock().unwrap().stderr.as_deref(), Some("other: x"));
    }

    #[test]
    fn splits_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\n\n"), vec!["world", ""]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn long_lines_are_cut() {
        let mut s = LineSplitter::default();
        let lines = s.push(&vec![b'a'; MAX_LINE * 2 + 3]);
        assert_eq!(lines.len(), 2);
        assert_eq!(s.finish().unwrap().len(), 3);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"a\xffb\n"), vec!["a\u{fffd}b"]);
    }

    #[test]
    fn forward_keeps_last_stderr_line() {
        let last = Arc::new(Mutex::new(LastLines::default()));
        forward(
            &b"first\nsecond error\n\n"[..],
            "svc",
            Stream::Stderr,
            Console::new(crate::console::Level::Error),
            &last,
        );
        forward(
            &b"out\n"[..],
            "svc",
            Stream::Stdout,
            Console::new(crate::console::Level::Error),
            &last,
        );
        let last = last.lock().unwrap();
        assert_eq!(last.stderr.as_deref(), Some("second error"));
        assert_eq!(last.best(), Some("second error"));
        assert_eq!(last.any.as_deref(), Some("out"));
    }
}
