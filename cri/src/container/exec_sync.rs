//! ExecSync: run a command in a running container and answer its output and exit code.
//!
//! berthd's `Tasks.Exec` creates the process, berth-cri attaches to it over `Tasks.Attach`
//! (berth-api's stdio client, output only) and then starts it, so nothing it writes is
//! missed; the output is read until the exit. A command still running at the timeout is
//! SIGKILLed and the call fails DEADLINE_EXCEEDED (kubelet's exec probes). Output is capped
//! at 16 MiB per stream, containerd's limit.

use std::time::Duration;

use berth_api::client::stdio::Event;

use super::Containers;
use crate::berthd::Exec;
use crate::error::{Error, Result};
use crate::proto::ExecSyncResponse;

/// Largest output kept per stream.
const MAX_OUTPUT: usize = 16 << 20;
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

/// Appends `b` to `to`, keeping at most [`MAX_OUTPUT`] bytes.
fn keep(to: &mut Vec<u8>, b: &[u8]) {
    let room = MAX_OUTPUT.saturating_sub(to.len());
    to.extend_from_slice(&b[..b.len().min(room)]);
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
        // On a task of its own: kubelet's deadline is the same as the command's, and when the
        // client gives up first the request's future is dropped — the timeout's SIGKILL must
        // still happen.
        let me = self.clone();
        let id = r.id.clone();
        tokio::spawn(async move { me.exec_in(&id, &exec_id, cmd, timeout).await })
            .await
            .map_err(|e| Error::Corrupt(format!("ExecSync task: {e}")))?
    }

    async fn exec_in(
        &self,
        id: &str,
        exec_id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<ExecSyncResponse> {
        let mut session = self
            .berthd
            .exec_attached(
                id,
                Exec {
                    exec_id: exec_id.to_owned(),
                    args: cmd,
                    ..Default::default()
                },
            )
            .await?;
        let limit = if timeout > 0 {
            Duration::from_secs(timeout as u64)
        } else {
            NO_TIMEOUT
        };
        let mut out = ExecSyncResponse::default();
        let read = async {
            while let Some(ev) = session.output.next().await {
                match ev {
                    Ok(Event::Stdout(b)) => keep(&mut out.stdout, &b),
                    Ok(Event::Stderr(b)) => keep(&mut out.stderr, &b),
                    Ok(Event::Exit { status, .. }) => return Ok(Some(status)),
                    Err(e) => return Err(e),
                }
            }
            Ok(None)
        };
        let exit = match tokio::time::timeout(limit, read).await {
            Ok(Ok(Some(status))) => status,
            // The stream ended without the exit (berthd restarted): ask for it.
            Ok(Ok(None)) | Ok(Err(_)) => {
                self.berthd
                    .wait_process(id, exec_id, limit)
                    .await?
                    .exit_status
            }
            Err(_) => {
                let _ = self.berthd.signal(id, exec_id, SIGKILL, false).await;
                return Err(Error::DeadlineExceeded(format!(
                    "command in container {id} timed out after {timeout} s (killed)"
                )));
            }
        };
        out.exit_code = exit as i32;
        Ok(out)
    }
}
