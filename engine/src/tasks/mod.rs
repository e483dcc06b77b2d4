//! Containers and tasks: the OCI runtime spec ([`spec`]), the per-container shim process
//! ([`shim`]) that creates the container with youki's `libcontainer` and owns its processes,
//! stdio and exit status, berthd's Containers and Tasks services ([`service`]) and berthctl's
//! `run`, `containers` and `tasks` verbs ([`ctl`]).
//!
//! Layout under berthd's state dir: `shims/<namespace>/<id>/` is a container's bundle
//! (`config.json`, `rootfs/` with the snapshot mounted on it) and its shim's home:
//! `shim.sock` (ttrpc), `shim.log` (the shim's own log), `log` (the container's output,
//! size-capped with one rotation), `exit` (the init's exit status, written and fsynced before
//! anyone is told) and `runtime/` (libcontainer's state). See docs/containers.md.

pub mod boot;
mod cgroup_gp;
pub mod logs;
pub mod metrics;
pub mod oom;
pub mod runc;
pub mod runtimes;
pub mod service;
pub mod shim;
pub mod spec;

use std::path::PathBuf;

/// Name the shim runs under (argv[0]); the multi-call binary and the host's `berthd`
/// dispatch on it.
pub const SHIM_ARGV0: &str = "berth-shim";

/// Whether `argv0` names the shim applet.
pub fn is_shim(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == SHIM_ARGV0)
}

/// Errors of containers and tasks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("executor: {0}")]
    Executor(String),
    #[error("shim for {id}: {reason}")]
    Shim { id: String, reason: String },
    #[error("metadata")]
    Metadata(#[source] Box<crate::metadata::Error>),
    #[error("snapshot {key}")]
    Snapshot {
        key: String,
        #[source]
        source: Box<crate::snapshots::Error>,
    },
    #[error("path {0}: not valid")]
    BadPath(PathBuf),
}

impl Error {
    /// The ttrpc status for this error, with its whole cause chain as the message.
    pub fn to_ttrpc(&self) -> ttrpc::Error {
        let code = match self {
            Self::InvalidSpec(_) | Self::BadPath(_) => ttrpc::Code::INVALID_ARGUMENT,
            Self::NotFound(_) => ttrpc::Code::NOT_FOUND,
            Self::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            Self::FailedPrecondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            Self::Metadata(e) => return e.to_ttrpc(),
            Self::Snapshot { source, .. } => source.ttrpc_code(),
            _ => ttrpc::Code::INTERNAL,
        };
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, crate::metadata::chain(self)))
    }
}

/// The status of a process: exit code, or 128 + signal for a signalled one (containerd's
/// convention).
pub fn exit_code(status: nix::sys::wait::WaitStatus) -> Option<u32> {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, c) => Some(c as u32),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as u32),
        _ => None,
    }
}
