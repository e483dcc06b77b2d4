//! ExecSync: run a command in a running container and answer its output and exit code.
//!
//! berthd's Tasks.Exec takes FIFO paths for the process's stdio (its shim copies the
//! process's output into them): berth-cri, on the same node, makes two FIFOs under
//! `<state_dir>/containers/<id>/`, opens their read ends before the exec (the shim waits for
//! a reader), reads both to their end, and waits for the exit. A command still running at
//! the timeout is SIGKILLed and the call fails DEADLINE_EXCEEDED (kubelet's exec probes).
//! Output is capped at 16 MiB per stream, containerd's limit.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::Containers;
use crate::berthd::Exec;
use crate::error::{Error, Result};
use crate::proto::ExecSyncResponse;

/// Largest output kept per stream.
const MAX_OUTPUT: u64 = 16 << 20;
const SIGKILL: u32 = 9;
/// The timeout when kubelet gives none.
const NO_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").map_err(|source| Error::Io {
            what: "open /dev/urandom".into(),
            source,
        })?,
        &mut b,
    )
    .map_err(|source| Error::Io {
        what: "read /dev/urandom".into(),
        source,
    })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Reads a FIFO to its end (at most [`MAX_OUTPUT`] bytes kept).
async fn drain(rx: tokio::net::unix::pipe::Receiver) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = rx.take(MAX_OUTPUT).read_to_end(&mut out).await;
    out
}

impl Containers {
    /// ExecSync of `cmd` in container `id`, bounded by `timeout` seconds (0: none).
    pub async fn exec_sync(
        self: &std::sync::Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("ExecSync without a command".into()));
        }
        let r = self.get(id).await?;
        match self.task(&r.id).await? {
            Some(t) if t.status == "running" => {}
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running",
                    r.id
                )))
            }
        }
        let exec_id = format!("sync-{}", random_hex(8)?);
        let dir = self.state_dir.join("containers").join(&r.id).join(&exec_id);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        // On a task of its own: kubelet's deadline is the same as the command's, and when the
        // client gives up first the request's future is dropped — the timeout's SIGKILL must
        // still happen.
        let me = self.clone();
        let id = r.id.clone();
        tokio::spawn(async move {
            let result = me.exec_in(&id, &exec_id, cmd, &dir, timeout).await;
            let _ = std::fs::remove_dir_all(&dir);
            result
        })
        .await
        .map_err(|e| Error::Corrupt(format!("ExecSync task: {e}")))?
    }

    async fn exec_in(
        &self,
        id: &str,
        exec_id: &str,
        cmd: Vec<String>,
        dir: &std::path::Path,
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        let io = |what: String| move |source| Error::Io { what, source };
        let mut readers = Vec::new();
        for name in ["stdout", "stderr"] {
            let p = dir.join(name);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
                |e| Error::Io {
                    what: format!("mkfifo {}", p.display()),
                    source: e.into(),
                },
            )?;
            let rx = tokio::net::unix::pipe::OpenOptions::new()
                .open_receiver(&p)
                .map_err(io(format!("open {}", p.display())))?;
            readers.push(tokio::spawn(drain(rx)));
        }
        let path = |n: &str| dir.join(n).display().to_string();
        self.berthd
            .exec(
                id,
                Exec {
                    exec_id: exec_id.to_owned(),
                    args: cmd,
                    stdout: path("stdout"),
                    stderr: path("stderr"),
                    ..Default::default()
                },
            )
            .await?;
        let limit = if timeout > 0 {
            Duration::from_secs(timeout as u64)
        } else {
            NO_TIMEOUT
        };
        let exit = match self.berthd.wait_process(id, exec_id, limit).await {
            Ok(w) => w.exit_status,
            Err(e) if e.berthd_kind() == Some(berth_api::errdefs::Kind::DeadlineExceeded) => {
                let _ = self.berthd.signal(id, exec_id, SIGKILL, false).await;
                for r in readers {
                    r.abort();
                }
                return Err(Error::DeadlineExceeded(format!(
                    "command in container {id} timed out after {timeout} s (killed)"
                )));
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for r in readers {
            // The writers close when the process's output ends; a grandchild holding them
            // open longer is not waited for.
            match tokio::time::timeout(Duration::from_secs(5), r).await {
                Ok(Ok(v)) => out.push(v),
                _ => out.push(Vec::new()),
            }
        }
        let stderr = out.pop().unwrap_or_default();
        let stdout = out.pop().unwrap_or_default();
        Ok(ExecSyncResponse {
            stdout,
            stderr,
            exit_code: exit as i32,
        })
    }
}
