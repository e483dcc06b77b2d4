//! berthctl's one error type and its one exit-code policy.
//!
//! Every verb returns [`Error`]; `main_with_args` prints it as `berthctl: error: <error>` on
//! standard error and exits with [`EXIT_FAILURE`]. The exit codes, all decided here:
//!
//! - [`EXIT_USAGE`] (2): the command line does not parse (clap prints why);
//! - [`EXIT_FAILURE`] (1): a verb failed — berthd or berth-init unreachable or refusing, a
//!   bad value found after parsing, a local file;
//! - `run` and `tasks exec` end with their process's status (128 + signal for a signalled
//!   one), which is not an error of berthctl's;
//! - 0 otherwise (help and `--version` included).
//!
//! ttrpc statuses are rendered by berth-api's one mapping ([`describe`]: `CODE: message`).

use std::path::PathBuf;
use std::time::Duration;

use berth_api::client::ClientError;
use berth_api::errdefs::describe;

/// The command line does not parse.
pub const EXIT_USAGE: i32 = 2;
/// A verb failed.
pub const EXIT_FAILURE: i32 = 1;

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting to berthd, or a call bounded by `--timeout`, in berth-api's words.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A call berthctl names by what it was doing (a container's lifecycle step, a stream).
    #[error("{context}: {}", describe(.source))]
    Call {
        /// `create container`, `Transfer.Export`, `pull <ref>`, …
        context: String,
        #[source]
        source: ttrpc::Error,
    },
    /// berthd ended a stream without the result it owed.
    #[error("{context}: berthd ended the stream without a result")]
    NoResult {
        /// What was asked.
        context: String,
    },
    /// berth-init's control API is not reachable.
    #[error("cannot connect to berth-init at {address}: {source}")]
    InitConnect {
        address: String,
        #[source]
        source: ttrpc::Error,
    },
    /// A call to berth-init failed.
    #[error(
        "{method} call to berth-init at {address} failed: {}",
        describe(.source)
    )]
    InitCall {
        address: String,
        method: &'static str,
        #[source]
        source: ttrpc::Error,
    },
    /// berth-init did not answer within `--timeout`.
    #[error("{method} call to berth-init at {address} timed out after {timeout:?}")]
    InitTimeout {
        address: String,
        method: &'static str,
        timeout: Duration,
    },
    /// A bad command-line value, found after parsing.
    #[error("{0}")]
    Usage(String),
    /// A local file (or pipe, or signal handler) could not be used.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Mounting an image's view failed.
    #[error("cannot mount {what} on {}: {reason}", target.display())]
    Mount {
        what: String,
        target: PathBuf,
        reason: String,
    },
    /// Unmounting failed.
    #[error("cannot unmount {}: {source}", target.display())]
    Unmount {
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    /// No async runtime.
    #[error("cannot start an async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The remote API could not be reached: TCP, the TLS handshake (the node's certificate is
    /// not for the node meant, not from the fleet CA), a time-out.
    #[error("{}", berth_api::errdefs::chain(.0))]
    Remote(#[from] berth_remote::client::ConnectError),
    /// Some nodes of a `--nodes` run failed (each said why under its prefix).
    #[error("{failed} of {total} nodes failed: {names}")]
    Nodes {
        failed: usize,
        total: usize,
        names: String,
    },
}

impl Error {
    /// Maps a failed call to an [`Error::Call`] with `context`: `.map_err(Error::call("…"))`.
    pub fn call(context: impl Into<String>) -> impl FnOnce(ttrpc::Error) -> Error {
        let context = context.into();
        move |source| Error::Call { context, source }
    }

    /// A local I/O error while doing `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// berth-api's client error of a call to berth-init, in berth-init's name.
    pub fn init(e: ClientError) -> Error {
        match e {
            ClientError::Connect { address, source } => Error::InitConnect { address, source },
            ClientError::Call {
                address,
                method,
                source,
            } => Error::InitCall {
                address,
                method,
                source,
            },
            ClientError::Timeout {
                address,
                method,
                timeout,
            } => Error::InitTimeout {
                address,
                method,
                timeout,
            },
            ClientError::Runtime(e) => Error::Runtime(e),
        }
    }

    /// The exit code of a failed verb.
    pub fn exit_code(&self) -> i32 {
        EXIT_FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::errdefs::{to_ttrpc, Kind};

    #[test]
    fn call_errors_carry_the_status_class() {
        // berthd's NOT_FOUND message for a task names the task; "not found" is the class.
        let e = Error::call("list pids")(to_ttrpc(
            Kind::NotFound,
            "task \"x\" in namespace \"default\"",
        ));
        assert_eq!(
            e.to_string(),
            "list pids: NOT_FOUND: task \"x\" in namespace \"default\""
        );
    }

    #[test]
    fn init_errors_name_berth_init() {
        let e = Error::init(ClientError::Timeout {
            address: "unix:///run/berth/init.sock".into(),
            method: "Status",
            timeout: Duration::from_secs(2),
        });
        assert_eq!(
            e.to_string(),
            "Status call to berth-init at unix:///run/berth/init.sock timed out after 2s"
        );
        assert_eq!(e.exit_code(), EXIT_FAILURE);
    }
}
