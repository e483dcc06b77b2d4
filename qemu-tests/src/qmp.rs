//! A minimal QMP client for the VM's monitor socket.
//!
//! One connection per command: QEMU serves one QMP client at a time on a socket chardev, and
//! commands are rare. Human monitor (HMP) commands go through `human-monitor-command`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// A negotiated QMP session.
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self> {
        let stream = UnixStream::connect(path).map_err(Error::io(format!(
            "cannot connect to the QEMU monitor at {}",
            path.display()
        )))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(Error::io("cannot set a monitor timeout"))?;
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(Error::io("cannot clone the monitor socket"))?,
        );
        let mut qmp = Self {
            writer: stream,
            reader,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Monitor(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs a QMP command; returns its `return` value (events in between are skipped).
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut line = request.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(Error::io("cannot write to the QEMU monitor"))?;
        loop {
            let message = self.read_message()?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                return Err(Error::Monitor(format!("{command}: {error}")));
            }
        }
    }

    /// Runs a human monitor command (e.g. `info status`) and returns its text output.
    pub fn hmp(&mut self, command_line: &str) -> Result<String> {
        let value = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        Ok(value.as_str().unwrap_or_default().to_string())
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(Error::io("cannot read from the QEMU monitor"))?;
        if n == 0 {
            return Err(Error::Monitor("QEMU closed the monitor connection".into()));
        }
        serde_json::from_str(&line)
            .map_err(|e| Error::Monitor(format!("bad message {line:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn negotiates_skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream).lines();
            let mut expect = |execute: &str| {
                let request: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
                assert_eq!(request["execute"], execute);
                request
            };
            writeln!(writer, r#"{{"QMP":{{"version":{{}},"capabilities":[]}}}}"#).unwrap();
            expect("qmp_capabilities");
            writeln!(writer, r#"{{"return":{{}}}}"#).unwrap();
            let hmp = expect("human-monitor-command");
            assert_eq!(hmp["arguments"]["command-line"], "info status");
            writeln!(writer, r#"{{"event":"RESUME","data":{{}}}}"#).unwrap();
            writeln!(writer, r#"{{"return":"VM status: running\r\n"}}"#).unwrap();
            expect("nope");
            writeln!(
                writer,
                r#"{{"error":{{"class":"CommandNotFound","desc":"no"}}}}"#
            )
            .unwrap();
        });
        let mut qmp = Qmp::connect(&path, Duration::from_secs(10)).unwrap();
        assert_eq!(qmp.hmp("info status").unwrap(), "VM status: running\r\n");
        let e = qmp.execute("nope", None).unwrap_err();
        assert!(e.to_string().contains("CommandNotFound"), "{e}");
        server.join().unwrap();
    }
}
