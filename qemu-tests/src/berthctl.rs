//! The host's `berthctl`, talking to a guest's berthd through the API socket.
//!
//! The static build is used (`target/x86_64-unknown-linux-gnu/release/berthctl`, the same one
//! `make run` tells operators to use), or whatever `BERTHCTL` names.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::image::release_dir;
use crate::process::{self, CommandOutput};

/// Environment variable overriding the berthctl binary.
pub const BERTHCTL_ENV: &str = "BERTHCTL";

/// Locates berthctl.
pub fn path() -> Result<PathBuf> {
    let path = std::env::var_os(BERTHCTL_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| release_dir().join("berthctl"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryMissing {
            path,
            env: Some(BERTHCTL_ENV),
        })
    }
}

/// Runs `berthctl --address <address> <args…>`, killed after `timeout`; any exit status is
/// returned (see [`CommandOutput::status`]).
pub fn run(address: &Path, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
    let mut command = Command::new(path()?);
    command.arg("--address").arg(address).args(args);
    process::run(command, timeout)
}

/// Like [`run`], with `input` on berthctl's stdin (then its end): `run -i`.
pub fn run_fed(
    address: &Path,
    args: &[&str],
    input: &[u8],
    timeout: Duration,
) -> Result<CommandOutput> {
    let mut command = Command::new(path()?);
    command.arg("--address").arg(address).args(args);
    process::run_fed(command, Some(input), timeout)
}

/// Like [`run`], but a non-zero exit is an error carrying the output.
pub fn run_ok(address: &Path, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
    let mut command = Command::new(path()?);
    command.arg("--address").arg(address).args(args);
    process::run_ok(command, timeout)
}
