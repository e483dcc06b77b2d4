//! Extra processes in a running task's container (`berthctl tasks exec`): the shim creates
//! them (see [`super::shim::exec`]) and owns their stdio and exit.

use berth_api::proto::shim as spb;

use super::launch::shim_err;
use super::{Error, TaskIo, Tasks};

/// A process to start in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecProcess {
    /// Its id among the task's processes (an identifier).
    pub exec_id: String,
    /// Command and arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    /// Working directory; empty: the container's.
    pub cwd: String,
    pub io: TaskIo,
}

impl Tasks {
    /// Starts `p` in task `id`'s container; returns its pid.
    pub async fn exec(&self, ns: &str, id: &str, p: ExecProcess) -> Result<u32, Error> {
        let out = self
            .shim(ns, id)?
            .exec(
                ttrpc::context::with_timeout(60_000_000_000),
                &spb::ExecRequest {
                    exec_id: p.exec_id,
                    args: p.args,
                    env: p.env,
                    cwd: p.cwd,
                    stdin: p.io.stdin,
                    stdout: p.io.stdout,
                    stderr: p.io.stderr,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| shim_err(id, e))?;
        Ok(out.pid)
    }
}
