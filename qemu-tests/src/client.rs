//! Host side of the test agent protocol: one connection to the VM's `test.sock`.
//!
//! Request ids come from a counter shared by every client of a VM, so a reply meant for an
//! earlier connection (the guest port outlives host connections) is recognised and skipped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::protocol::{
    Empty, Op, PidofOutput, PingOutput, ReadFileOutput, Reply, Request, RunOutput,
};

/// Default time allowed for one request (a `run` gets its own timeout plus this).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(90);

/// A connection to the guest's test agent.
pub struct AgentClient {
    stream: UnixStream,
    pending: Vec<u8>,
    ids: Arc<AtomicU64>,
}

impl AgentClient {
    /// Connects to the host end of the agent's port; `ids` numbers requests.
    ///
    /// Sends an empty line first: should an earlier client have left an unfinished line in
    /// the port that the agent did not notice was abandoned, the newline ends it (the agent
    /// answers it as invalid, a reply this client skips) instead of it swallowing our first
    /// request.
    pub fn connect(path: &Path, ids: Arc<AtomicU64>) -> Result<Self> {
        let mut stream = UnixStream::connect(path).map_err(Error::io(format!(
            "cannot connect to the test agent socket {}",
            path.display()
        )))?;
        stream
            .write_all(b"\n")
            .map_err(Error::io("cannot write to the test agent socket"))?;
        Ok(Self {
            stream,
            pending: Vec::new(),
            ids,
        })
    }

    /// Sends `op` and waits up to `timeout` for its reply; an `ok:false` reply is an error.
    pub fn request<T: DeserializeOwned>(&mut self, op: Op, timeout: Duration) -> Result<T> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let name = op_name(&op);
        let mut line = serde_json::to_vec(&Request { id, op })
            .map_err(|e| Error::AgentProtocol(e.to_string()))?;
        line.push(b'\n');
        self.stream
            .write_all(&line)
            .map_err(Error::io(format!("cannot send {name} to the test agent")))?;
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.read_reply(deadline, timeout, &name)?;
            if reply.id != id {
                // A late reply to a request of an earlier connection.
                continue;
            }
            if !reply.ok {
                return Err(Error::AgentOp {
                    op: name,
                    error: reply.error.unwrap_or_default(),
                });
            }
            return serde_json::from_value(serde_json::Value::Object(reply.result))
                .map_err(|e| Error::AgentProtocol(format!("bad {name} reply: {e}")));
        }
    }

    fn read_reply(&mut self, deadline: Instant, timeout: Duration, name: &str) -> Result<Reply> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return serde_json::from_slice(&line).map_err(|e| {
                    Error::AgentProtocol(format!(
                        "bad reply {:?}: {e}",
                        String::from_utf8_lossy(&line)
                    ))
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: format!("the test agent's reply to {name}"),
                    timeout,
                    context: String::new(),
                });
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(Error::io("cannot set a read timeout"))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(Error::AgentGone { op: name.into() }),
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Err(Error::AgentGone { op: name.into() })
                }
                Err(e) => return Err(Error::io(format!("cannot read the reply to {name}"))(e)),
            }
        }
    }

    /// `ping`; returns the agent's version.
    pub fn ping(&mut self, timeout: Duration) -> Result<String> {
        self.request::<PingOutput>(Op::Ping, timeout)
            .map(|o| o.version)
    }

    /// Runs a program in the guest with the default 30 s timeout.
    pub fn run(&mut self, argv: &[&str]) -> Result<RunOutput> {
        self.run_with(argv, None, REQUEST_TIMEOUT)
    }

    /// Runs a program in the guest with extra environment and a timeout.
    pub fn run_with(
        &mut self,
        argv: &[&str],
        env: Option<std::collections::BTreeMap<String, String>>,
        timeout: Duration,
    ) -> Result<RunOutput> {
        let op = Op::Run {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env,
            timeout_secs: Some(timeout.as_secs().max(1)),
        };
        self.request(op, timeout + REQUEST_TIMEOUT)
    }

    /// Writes a file in the guest.
    pub fn write_file(&mut self, path: &str, data: &[u8], mode: Option<u32>) -> Result<()> {
        let data = base64::engine::general_purpose::STANDARD.encode(data);
        self.request::<Empty>(
            Op::WriteFile {
                path: path.into(),
                data,
                mode,
            },
            REQUEST_TIMEOUT,
        )
        .map(drop)
    }

    /// Reads a file from the guest.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>> {
        let out: ReadFileOutput =
            self.request(Op::ReadFile { path: path.into() }, REQUEST_TIMEOUT)?;
        base64::engine::general_purpose::STANDARD
            .decode(out.data)
            .map_err(|e| Error::AgentProtocol(format!("read_file data is not base64: {e}")))
    }

    /// Sends signal number `signal` to `pid` in the guest. Signalling init (pid 1) to power
    /// off can end the VM before the reply arrives: that is [`Error::AgentGone`].
    pub fn kill(&mut self, pid: i32, signal: i32) -> Result<()> {
        self.request::<Empty>(Op::Kill { pid, signal }, REQUEST_TIMEOUT)
            .map(drop)
    }

    /// Pids of the guest processes called `name`.
    pub fn pidof(&mut self, name: &str) -> Result<Vec<i32>> {
        self.request::<PidofOutput>(Op::Pidof { name: name.into() }, REQUEST_TIMEOUT)
            .map(|o| o.pids)
    }

    /// The guest's `CLOCK_REALTIME`, in nanoseconds since the Unix epoch.
    pub fn time(&mut self) -> Result<i64> {
        self.request::<crate::protocol::TimeOutput>(Op::Time, REQUEST_TIMEOUT)
            .map(|o| o.unix_nanos)
    }

    /// Resolves `name` in the guest; returns the server asked and the A records.
    pub fn resolve(&mut self, name: &str) -> Result<(String, Vec<String>)> {
        self.request::<crate::protocol::ResolveOutput>(
            Op::Resolve { name: name.into() },
            REQUEST_TIMEOUT,
        )
        .map(|o| (o.server, o.addresses))
    }

    /// Sends a syslog message to the guest's `/dev/log`.
    pub fn syslog(&mut self, message: &str) -> Result<()> {
        self.request::<Empty>(
            Op::Syslog {
                message: message.into(),
            },
            REQUEST_TIMEOUT,
        )
        .map(drop)
    }
}

fn op_name(op: &Op) -> String {
    match serde_json::to_value(op) {
        Ok(v) => v
            .get("op")
            .and_then(|o| o.as_str())
            .unwrap_or("request")
            .to_string(),
        Err(_) => "request".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    #[test]
    fn skips_stale_replies_and_reports_failures_and_hang_ups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut lines = BufReader::new(stream).lines();
            assert_eq!(
                lines.next().unwrap().unwrap(),
                "",
                "a connection starts with a newline"
            );
            let ping: Request = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            // A late reply meant for an earlier connection, then the real one.
            writeln!(writer, r#"{{"id":99,"ok":true,"pids":[3]}}"#).unwrap();
            writeln!(writer, r#"{{"id":{},"ok":true,"version":"9.9"}}"#, ping.id).unwrap();
            let kill: Request = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            writeln!(writer, r#"{{"id":{},"ok":false,"error":"EPERM"}}"#, kill.id).unwrap();
            let _pidof = lines.next();
            // Hang up without answering.
        });
        let mut client = AgentClient::connect(&path, Arc::new(AtomicU64::new(41))).unwrap();
        assert_eq!(client.ping(Duration::from_secs(10)).unwrap(), "9.9");
        let e = client.kill(1, 15).unwrap_err();
        assert!(
            matches!(e, Error::AgentOp { ref op, ref error } if op == "kill" && error == "EPERM"),
            "{e}"
        );
        let e = client.pidof("x").unwrap_err();
        assert!(matches!(e, Error::AgentGone { .. }), "{e}");
        server.join().unwrap();
    }
}
