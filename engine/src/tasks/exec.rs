//! Extra processes in a running task's container (`berthctl tasks exec`): the shim creates
//! them (see [`super::shim::exec`]) and owns their stdio and exit; [`Tasks::start_exec`]
//! runs one. Also [`Tasks::attach`], the shim end of a process's stdio stream.

use berth_api::proto::{shim as spb, stdio};

use super::launch::shim_err;
use super::{Error, TaskIo, Tasks};

/// A stdio stream to a task's shim (`berth.shim.v1.Shim/Attach`).
pub type ShimAttach = ttrpc::r#async::ClientStream<stdio::AttachRequest, stdio::AttachResponse>;

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
    /// Opens a stdio stream to the shim of task `id` (no deadline: it lasts as long as the
    /// client stays attached). The caller sends the client's `open` first.
    pub async fn attach(&self, ns: &str, id: &str) -> Result<ShimAttach, Error> {
        self.shim(ns, id)?
            .attach(ttrpc::context::Context::default())
            .await
            .map_err(|e| shim_err(id, e))
    }

    /// Creates `p` in task `id`'s container (not started: see [`Tasks::start_exec`]);
    /// returns 0.
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
                    terminal: p.io.terminal,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| shim_err(id, e))?;
        Ok(out.pid)
    }
}
