//! Containers and tasks: the OCI runtime spec ([`spec`]), the per-container shim process
//! ([`shim`]) that creates the container with youki's `libcontainer` and owns its processes,
//! stdio and exit status, and the core of berthd's Containers, Tasks and Events services:
//! [`Tasks`] ([`manager`]) with its operations by concern — [`containers`] (records and their
//! rootfs snapshot), [`lifecycle`] (create, start, kill, pause, delete, state), [`exec`],
//! [`wait`] (waiting and the exit watch), [`adopt`] (shims that outlived a berthd) and
//! [`launch`] (starting a shim and connecting to it). Boot containers ([`boot`]) call the same
//! operations the services call. The services themselves are in `berth-daemon`.
//!
//! Layout under berthd's state dir: `shims/<namespace>/<id>/` is a container's bundle
//! (`config.json`, `rootfs/` with the snapshot mounted on it) and its shim's home:
//! `shim.log` (the shim's own log), `log` (the container's output,
//! size-capped with one rotation), `exit` (the init's exit status, written and fsynced before
//! anyone is told) and `runtime/` (libcontainer's state). The shim's ttrpc socket is
//! `s/<hash>` ([`shim_socket`]: a short path whatever the id's length). See
//! docs/containers.md.

pub mod adopt;
pub mod boot_containers;
mod cgroup_gp;
pub mod cgroups;
pub mod containers;
pub mod events;
pub mod exec;
pub mod launch;
pub mod lifecycle;
pub mod logs;
pub mod manager;
pub mod metrics;
pub mod oom;
pub mod runc;
pub mod runtimes;
pub mod shim;
pub mod shim_socket;
pub mod spec;
pub mod wait;

use std::fmt;
use std::path::PathBuf;

use berth_api::errdefs::{Classify, Kind};

pub use containers::{NewContainer, RunOptions};
pub use events::Event;
pub use exec::ExecProcess;
pub use lifecycle::{TaskIo, TaskOptions};
pub use manager::Tasks;
pub use shim::exits::ExitRecord;

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
    /// A request the shim refuses as malformed (a bad signal, an exec without a command).
    #[error("{0}")]
    InvalidArgument(String),
    /// The shim is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// The executor or runtime failed inside the shim; the message says which step.
    #[error("{0}")]
    Internal(String),
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
    #[error(transparent)]
    Metadata(Box<crate::metadata::Error>),
    #[error("snapshot {key}")]
    Snapshot {
        key: String,
        #[source]
        source: Box<crate::snapshots::Error>,
    },
    #[error("path {0}: not valid")]
    BadPath(PathBuf),
}

impl Classify for Error {
    fn kind(&self) -> Kind {
        match self {
            Self::InvalidSpec(_) | Self::BadPath(_) | Self::InvalidArgument(_) => {
                Kind::InvalidArgument
            }
            Self::NotFound(_) => Kind::NotFound,
            Self::AlreadyExists(_) => Kind::AlreadyExists,
            Self::FailedPrecondition(_) => Kind::FailedPrecondition,
            Self::Unavailable(_) => Kind::Unavailable,
            Self::Metadata(e) => e.kind(),
            Self::Snapshot { source, .. } => source.kind(),
            Self::Io { .. } | Self::Executor(_) | Self::Shim { .. } | Self::Internal(_) => {
                Kind::Internal
            }
        }
    }
}

impl From<crate::metadata::Error> for Error {
    fn from(e: crate::metadata::Error) -> Self {
        Self::Metadata(Box::new(e))
    }
}

/// What a process is doing, as the shim reports it (containerd's task states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Created, not started (the init waits for Start).
    Created,
    /// Started and not exited.
    Running,
    /// Being frozen.
    Pausing,
    /// Frozen.
    Paused,
    /// Exited (its exit status is known).
    Stopped,
    /// Not known (the shim did not answer).
    Unknown,
}

impl Status {
    /// containerd's spelling, as the shim protocol and the Tasks service carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Pausing => "pausing",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
            Status::Unknown => "unknown",
        }
    }

    /// The status a shim reported (anything unknown is [`Status::Unknown`]).
    pub fn parse(s: &str) -> Status {
        match s {
            "created" => Status::Created,
            "running" => Status::Running,
            "pausing" => Status::Pausing,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            _ => Status::Unknown,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One process of a task (its init, or an exec'd process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessState {
    pub pid: u32,
    pub status: Status,
    /// Meaningful when [`Status::Stopped`].
    pub exit_status: u32,
    /// Unix nanoseconds of the exit (0: not exited).
    pub exited_at: i64,
    /// The kernel's OOM killer killed processes of the container before its init exited
    /// (the init only; CRI's `reason = OOMKilled`).
    pub oom_killed: bool,
}

impl ProcessState {
    /// A process whose status is not known.
    pub fn unknown() -> Self {
        Self {
            pid: 0,
            status: Status::Unknown,
            exit_status: 0,
            exited_at: 0,
            oom_killed: false,
        }
    }

    /// The stopped process of an exit record.
    pub fn exited(e: &ExitRecord) -> Self {
        Self {
            pid: e.pid,
            status: Status::Stopped,
            exit_status: e.exit_status,
            exited_at: e.exited_at,
            oom_killed: e.oom_kills > 0,
        }
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
