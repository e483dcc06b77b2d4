//! Guest side of the test agent: serves the protocol of [`crate::protocol`] on a
//! virtio-serial port so QEMU scenarios can act inside a berth test image.
//!
//! It runs as a service under berth-init (`berth-test-agent --port org.berth.test`), is
//! single-threaded and synchronous (one request at a time is all a scenario needs), and
//! never exits on a bad request: every failure becomes an `ok:false` reply.

mod dns;
mod files;
pub mod hold;
mod port;
mod procs;
mod run;
mod serve;
mod syslog;

use std::io;
use std::path::PathBuf;

pub use port::{find_port_in, wait_for_port, SYSFS_PORTS};
pub use serve::{handle_line, serve, ServeError, Session};

use crate::protocol::{Op, PingOutput, Reply, Request};

/// Why an operation failed; its message becomes the reply's `error`.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A request argument is unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    File {
        /// What was being done, e.g. "cannot read".
        what: &'static str,
        /// The guest path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Waiting for the program failed.
    #[error("cannot wait for {program}: {source}")]
    Wait {
        /// `argv[0]`.
        program: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The program ran past its timeout and was killed.
    #[error("{program} did not finish within {secs} s and was killed")]
    Timeout {
        /// `argv[0]`.
        program: String,
        /// The timeout.
        secs: u64,
    },
    /// kill(2) failed.
    #[error("cannot send signal {signal} to pid {pid}: {source}")]
    Kill {
        /// Target.
        pid: i32,
        /// Signal number.
        signal: i32,
        /// The cause.
        #[source]
        source: nix::Error,
    },
    /// `/proc` could not be listed.
    #[error("cannot list /proc: {0}")]
    Proc(#[source] io::Error),
    /// Nothing receives datagrams on `/dev/log` (init's syslog receiver is not running).
    #[error("nothing listens on {path}: {source}")]
    SyslogNotListening {
        /// The socket path.
        path: PathBuf,
        /// The cause (no such socket, or connection refused).
        #[source]
        source: io::Error,
    },
    /// A `resolve` query failed.
    #[error("resolve: {0}")]
    Dns(String),
    /// Sending the syslog datagram failed otherwise.
    #[error("cannot send to {path}: {source}")]
    Syslog {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Performs one request and builds its reply.
pub fn dispatch(request: Request) -> Reply {
    let id = request.id;
    let result = match request.op {
        Op::Ping => Ok(Reply::success(
            id,
            &PingOutput {
                version: env!("CARGO_PKG_VERSION").into(),
            },
        )),
        Op::Run {
            argv,
            env,
            timeout_secs,
        } => run::run(&argv, env.as_ref(), timeout_secs).map(|out| Reply::success(id, &out)),
        Op::WriteFile { path, data, mode } => {
            files::write_file(&path, &data, mode).map(|out| Reply::success(id, &out))
        }
        Op::ReadFile { path } => files::read_file(&path).map(|out| Reply::success(id, &out)),
        Op::Kill { pid, signal } => procs::kill(pid, signal).map(|out| Reply::success(id, &out)),
        Op::Pidof { name } => procs::pidof(&name).map(|out| Reply::success(id, &out)),
        Op::Syslog { message } => syslog::send(std::path::Path::new(syslog::DEV_LOG), &message)
            .map(|out| Reply::success(id, &out)),
        Op::Time => Ok(Reply::success(id, &time_now())),
        Op::Resolve { name } => {
            dns::resolve(dns::RESOLV_CONF, &name, std::time::Duration::from_secs(15))
                .map(|out| Reply::success(id, &out))
        }
    };
    result.unwrap_or_else(|e| Reply::failure(id, error_chain(&e)))
}

/// The guest's `CLOCK_REALTIME`.
fn time_now() -> crate::protocol::TimeOutput {
    let unix_nanos = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    };
    crate::protocol::TimeOutput { unix_nanos }
}

/// Formats an error with its sources, so a reply explains the root cause too.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
