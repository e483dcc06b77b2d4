//! StopPodSandbox and RemovePodSandbox, and the teardown they share with a failed
//! RunPodSandbox. Every step tolerates its work being done already, because kubelet calls
//! StopPodSandbox repeatedly and a crash may have stopped any of them half-way:
//!
//! 1. the pause task is killed (SIGKILL to all its processes), waited for and deleted;
//! 2. CNI DEL runs while the namespace is still pinned (so the plugins can remove the
//!    interface), retried a few times; it releases the IP lease and port mappings even when
//!    the namespace is gone;
//! 3. the namespace is unpinned and its file removed, and the IP labels are cleared.
//!
//! RemovePodSandbox then deletes the record, which frees the name.

use std::time::Duration;

use super::{run::pod_network, Record, Sandboxes};
use crate::error::{Error, Result};
use crate::labels;
use crate::netns;

/// SIGKILL.
const SIGKILL: u32 = 9;
/// How long a killed pause task may take to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Sandboxes {
    /// StopPodSandbox: a sandbox that does not exist is already stopped.
    pub async fn stop(&self, id: &str) -> Result<()> {
        let Some(rec) = self.find(id).await? else {
            tracing::info!(
                sandbox = id,
                "StopPodSandbox of an unknown sandbox: nothing to do"
            );
            return Ok(());
        };
        self.teardown(&rec).await?;
        tracing::info!(sandbox = %rec.id, "sandbox stopped");
        Ok(())
    }

    /// RemovePodSandbox: stops the sandbox if needed, then deletes its record. A sandbox
    /// that does not exist is already removed.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(rec) = self.find(id).await? else {
            return Ok(());
        };
        self.teardown(&rec).await?;
        match self.berthd.delete_container(&rec.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        super::files::remove(&self.state_dir, &rec.id);
        tracing::info!(sandbox = %rec.id, "sandbox removed");
        Ok(())
    }

    /// Undoes whatever of RunPodSandbox happened; the first failure is returned after every
    /// step was tried (a failed DEL keeps the namespace pinned so a retry can still use it).
    pub(super) async fn teardown(&self, rec: &Record) -> Result<()> {
        self.kill_task(&rec.id).await?;
        let Some(path) = rec.netns() else {
            return Ok(());
        };
        let prev = rec
            .labels
            .get(labels::CNI_RESULT)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        let pod = pod_network(&rec.id, &path, &rec.config);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.cni.del(&pod, prev.as_ref()).await {
                Ok(()) => break,
                // No network configuration any more: nothing can be asked to release.
                Err(Error::FailedPrecondition(reason)) => {
                    tracing::warn!(sandbox = %rec.id, "CNI DEL skipped: {reason}");
                    break;
                }
                Err(e) if attempt < self.del_attempts => {
                    tracing::warn!(sandbox = %rec.id, attempt, "CNI DEL failed, retrying: {}", berth_api::errdefs::chain(&e));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        netns::remove(&path)?;
        if rec.labels.contains_key(labels::IPS) || rec.labels.contains_key(labels::CNI_RESULT) {
            let clear = [labels::IPS, labels::CNI_RESULT]
                .iter()
                .map(|k| (k.to_string(), String::new()))
                .collect();
            match self.berthd.update_labels(&rec.id, clear).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Kills, waits for and deletes the pause task; no task is fine.
    async fn kill_task(&self, id: &str) -> Result<()> {
        let process = match self.berthd.task(id).await {
            Ok(p) => p,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if process.status == "running" || process.status == "paused" || process.status == "created"
        {
            match self.berthd.kill_task(id, SIGKILL).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                // Already exited between the two calls.
                Err(e) if e.berthd_kind() == Some(berth_api::errdefs::Kind::FailedPrecondition) => {
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.berthd.wait_task(id, KILL_WAIT).await {
                tracing::warn!(
                    sandbox = id,
                    "waiting for the killed pause task: {}",
                    berth_api::errdefs::chain(&e)
                );
            }
        }
        match self.berthd.delete_task(id).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
