//! Wire types of the test agent protocol on the `org.berth.test` virtio-serial port.
//!
//! Shared by the guest side ([`crate::agent`]) and the host side ([`crate::client`]) so both
//! ends agree by construction. The contract is in `docs/architecture.md` ("Test agent
//! protocol"): newline-delimited JSON, one request per line, one reply per request, matched by
//! `id`. Replies to an older connection can arrive on a newer one (the port is a single byte
//! stream that outlives host connections), so clients must skip replies whose `id` they did
//! not ask for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the virtio-serial port the agent serves by default.
pub const DEFAULT_PORT: &str = berth_layout::ports::TEST;

/// One request line: `{"id":N,"op":…,…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the reply.
    pub id: u64,
    /// The operation and its arguments.
    #[serde(flatten)]
    pub op: Op,
}

/// The operations the agent performs inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Liveness check; the reply carries the agent's version.
    Ping,
    /// Runs a program from the image (there is no shell) and captures its output.
    Run {
        /// Program and arguments; `argv[0]` is an absolute path or a name found in `PATH`.
        argv: Vec<String>,
        /// Variables added to the agent's environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<BTreeMap<String, String>>,
        /// Kill the program (and its process group) after this long; default 30 s.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
    /// Writes a file, creating parent directories.
    WriteFile {
        /// Absolute path in the guest.
        path: String,
        /// File content, base64 (standard alphabet, padded).
        data: String,
        /// Permission bits; default 0o644.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
    },
    /// Reads a whole file.
    ReadFile {
        /// Absolute path in the guest.
        path: String,
    },
    /// Sends a signal to a process.
    Kill {
        /// Target pid (1 is init: SIGTERM powers the node off).
        pid: i32,
        /// Signal number, e.g. 9 or 15.
        signal: i32,
    },
    /// Lists the pids of processes with this name (`comm` or basename of `argv[0]`).
    Pidof {
        /// Process name, e.g. `berthd`.
        name: String,
    },
    /// Sends `message` as an RFC 5424 datagram to `/dev/log`.
    Syslog {
        /// Free text (the MSG part).
        message: String,
    },
    /// Reads the guest's `CLOCK_REALTIME` (the image has no `date`).
    Time,
    /// Resolves a name (A records) with the first name server of `/etc/resolv.conf`.
    Resolve {
        /// The name, e.g. `only-host.test`.
        name: String,
    },
}

/// One reply line: `{"id":N,"ok":true,…}` or `{"id":N,"ok":false,"error":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id (0 when the request line could not be parsed at all).
    pub id: u64,
    /// Whether the operation succeeded.
    pub ok: bool,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Operation-specific fields (see the `*Output` types).
    #[serde(flatten)]
    pub result: serde_json::Map<String, serde_json::Value>,
}

impl Reply {
    /// A successful reply carrying `output`'s fields.
    pub fn success<T: Serialize>(id: u64, output: &T) -> Self {
        let result = match serde_json::to_value(output) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => serde_json::Map::new(),
            Err(e) => return Self::failure(id, format!("cannot encode reply: {e}")),
        };
        Self {
            id,
            ok: true,
            error: None,
            result,
        }
    }

    /// A failed reply.
    pub fn failure(id: u64, error: impl Into<String>) -> Self {
        Self {
            id,
            ok: false,
            error: Some(error.into()),
            result: serde_json::Map::new(),
        }
    }
}

/// Reply fields of `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingOutput {
    /// The agent's crate version.
    pub version: String,
}

/// Reply fields of `run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutput {
    /// Exit code, or `128 + signal` when the program was killed by a signal.
    pub status: i32,
    /// The signal that ended the program, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Standard output, decoded as UTF-8 (invalid sequences replaced).
    pub stdout: String,
    /// Standard error, decoded as UTF-8 (invalid sequences replaced).
    pub stderr: String,
}

impl RunOutput {
    /// True when the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0 && self.signal.is_none()
    }
}

/// Reply fields of `read_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFileOutput {
    /// File content, base64.
    pub data: String,
}

/// Reply fields of `pidof`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidofOutput {
    /// Matching pids, ascending; empty when none.
    pub pids: Vec<i32>,
}

/// Reply fields of `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeOutput {
    /// Nanoseconds since the Unix epoch (negative before 1970).
    pub unix_nanos: i64,
}

/// Reply fields of `resolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveOutput {
    /// The name server asked (`address:53`).
    pub server: String,
    /// The A records, in answer order.
    pub addresses: Vec<String>,
}

/// Reply of operations that return nothing but success (`write_file`, `kill`, `syslog`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_matches_the_contract() {
        let line = r#"{"id":7,"op":"kill","pid":1,"signal":15}"#;
        let req: Request = serde_json::from_str(line).unwrap();
        assert_eq!(
            req,
            Request {
                id: 7,
                op: Op::Kill { pid: 1, signal: 15 }
            }
        );
        assert_eq!(serde_json::to_string(&req).unwrap(), line);

        let run: Request =
            serde_json::from_str(r#"{"id":1,"op":"run","argv":["/usr/bin/berthctl","version"]}"#)
                .unwrap();
        assert!(
            matches!(run.op, Op::Run { ref argv, env: None, timeout_secs: None } if argv.len() == 2)
        );
        let ping: Request = serde_json::from_str(r#"{"op":"ping","id":3}"#).unwrap();
        assert_eq!(ping.op, Op::Ping);
    }

    #[test]
    fn reply_flattens_output_fields() {
        let reply = Reply::success(4, &PidofOutput { pids: vec![12, 40] });
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"id":4,"ok":true,"pids":[12,40]}"#
        );
        let err = Reply::failure(5, "no such file");
        assert_eq!(
            serde_json::to_string(&err).unwrap(),
            r#"{"id":5,"ok":false,"error":"no such file"}"#
        );
        let back: Reply = serde_json::from_str(r#"{"id":4,"ok":true,"pids":[12]}"#).unwrap();
        let out: PidofOutput = serde_json::from_value(back.result.into()).unwrap();
        assert_eq!(out.pids, vec![12]);
    }
}
