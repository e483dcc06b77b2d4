//! Errors of the host-side harness.
//!
//! Hang-guard errors carry the tail of the serial console, so a failing scenario shows what
//! the guest was doing without opening the log file (whose path is in the message too).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Harness result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong driving a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image directory lacks an artefact.
    #[error(
        "test image not usable: {path} is missing. Build it with `make image-test` \
         (or point BERTH_TEST_IMAGE at an image directory)"
    )]
    ImageMissing {
        /// The missing file or directory.
        path: PathBuf,
    },
    /// A host binary the scenarios need was not built.
    #[error("{path} is missing: build it with `make static`{}", env.map(|e| format!(" (or set {e})")).unwrap_or_default())]
    BinaryMissing {
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that overrides the location, if any.
        env: Option<&'static str>,
    },
    /// An I/O operation of the harness failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A hang guard expired.
    #[error("timed out after {timeout:?} waiting for {what}{context}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The guard.
        timeout: Duration,
        /// Console tail or the last error seen, preceded by a newline.
        context: String,
    },
    /// QEMU exited while something was awaited.
    #[error("QEMU exited ({status}) while waiting for {what}{context}")]
    QemuExited {
        /// What was awaited.
        what: String,
        /// QEMU's status.
        status: ExitStatus,
        /// Console tail and QEMU's own output, preceded by a newline.
        context: String,
    },
    /// A scenario's check on the guest failed ([`crate::Vm::check`]).
    #[error("{message}{context}")]
    Check {
        /// What was expected.
        message: String,
        /// Console tail, preceded by a newline.
        context: String,
    },
    /// The QEMU monitor (QMP) refused or broke.
    #[error("QEMU monitor: {0}")]
    Monitor(String),
    /// The test agent answered `ok:false`.
    #[error("test agent {op} failed: {error}")]
    AgentOp {
        /// The operation.
        op: String,
        /// The agent's message.
        error: String,
    },
    /// The connection to the test agent closed before the reply (the VM powered off, or the
    /// agent was killed). Expected after asking init to power off.
    #[error("test agent connection closed before the reply to {op}")]
    AgentGone {
        /// The operation.
        op: String,
    },
    /// The test agent's reply could not be understood.
    #[error("test agent protocol: {0}")]
    AgentProtocol(String),
    /// A host command (berth-image, berthctl) failed.
    #[error("{command} failed ({status}){output}")]
    Command {
        /// The command line.
        command: String,
        /// Its status.
        status: String,
        /// Its output, preceded by a newline.
        output: String,
    },
    /// An image's `manifest.json` lacks what the harness reads from it.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A regular expression given to the harness is invalid.
    #[error(transparent)]
    Regex(#[from] regex::Error),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
