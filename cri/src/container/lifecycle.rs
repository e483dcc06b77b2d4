//! StartContainer, StopContainer, RemoveContainer, ReopenContainerLog and
//! UpdateContainerResources, and the container side of stopping and removing a sandbox.
//!
//! Start creates the task with the CRI log path (the shim writes kubelet's format there)
//! and starts it, then records the start time on the record. Stop sends the image's stop
//! signal (SIGTERM by default), waits the timeout, then SIGKILLs every process; it is
//! idempotent, and a container that does not exist is stopped already. Remove force-stops,
//! deletes the task and the record (its snapshot goes with it), freeing the name.

use std::time::Duration;

use super::Containers;
use crate::error::{Error, Result};
use crate::labels;
use crate::proto::{LinuxContainerResources, Signal};

const SIGKILL: u32 = 9;
const SIGTERM: u32 = 15;
/// How long a SIGKILLed task may take to be reported stopped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// A signal name (`SIGTERM`, `TERM`, `15`) as its number (x86-64 Linux).
fn signal_number(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let n = name.trim_start_matches("SIGNAL_").trim_start_matches("SIG");
    let table = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("POLL", 29),
        ("PWR", 30),
        ("SYS", 31),
        ("CLD", 17),
        ("IOT", 6),
    ];
    table.iter().find(|(k, _)| *k == n).map(|(_, v)| *v)
}

impl Containers {
    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<()> {
        let r = self.get(id).await?;
        if let Some(t) = self.task(&r.id).await? {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {} (its task exists): only a created container starts",
                r.id, t.status
            )));
        }
        if self.sandboxes.get(&r.sandbox_id).await?.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "the sandbox {} of container {} is gone",
                r.sandbox_id, r.id
            )));
        }
        let log = r.log_path().to_owned();
        if let Some(dir) = std::path::Path::new(&log)
            .parent()
            .filter(|_| !log.is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                what: format!("create the log directory {}", dir.display()),
                source,
            })?;
        }
        self.berthd.create_task(&r.id, &log).await?;
        if let Err(e) = self.berthd.start_task(&r.id).await {
            // Back to CREATED: no task is left for a retry to trip on.
            let _ = self.berthd.signal(&r.id, "", SIGKILL, true).await;
            let _ = self.berthd.wait_task(&r.id, KILL_WAIT).await;
            let _ = self.berthd.delete_task(&r.id).await;
            return Err(e);
        }
        self.berthd
            .update_labels(
                &r.id,
                vec![(
                    labels::CONTAINER_STARTED_AT.to_owned(),
                    crate::now_nanos().to_string(),
                )],
            )
            .await?;
        tracing::info!(container = %r.id, "container started");
        Ok(())
    }

    /// StopContainer with `timeout` seconds of grace.
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<()> {
        let Some(r) = self.find(id).await? else {
            return Ok(());
        };
        self.stop_record(&r, Duration::from_secs(timeout.max(0) as u64))
            .await
    }

    async fn stop_record(&self, r: &super::Record, grace: Duration) -> Result<()> {
        let Some(t) = self.task(&r.id).await? else {
            return Ok(());
        };
        if t.status == "stopped" {
            return Ok(());
        }
        let signal = self.stop_signal(r).await;
        if !grace.is_zero() && signal != SIGKILL {
            match self.berthd.signal(&r.id, "", signal, false).await {
                Ok(()) => {
                    if self.berthd.wait_task(&r.id, grace).await.is_ok() {
                        tracing::info!(container = %r.id, signal, "container stopped");
                        return Ok(());
                    }
                }
                Err(e) if e.is_not_found() => return Ok(()),
                Err(e) => {
                    tracing::warn!(container = %r.id, "stop signal: {}", berth_api::errdefs::chain(&e))
                }
            }
        }
        match self.berthd.signal(&r.id, "", SIGKILL, true).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        self.berthd.wait_task(&r.id, KILL_WAIT).await?;
        tracing::info!(container = %r.id, "container killed");
        Ok(())
    }

    /// The signal that stops `r`: the config's, else the image's `StopSignal`, else SIGTERM.
    async fn stop_signal(&self, r: &super::Record) -> u32 {
        if let Ok(s) = Signal::try_from(r.config.stop_signal) {
            if s != Signal::RuntimeDefault {
                if let Some(n) = signal_number(s.as_str_name()) {
                    return n;
                }
            }
        }
        match self.images.meta_of_record(&r.image_name).await {
            Ok(Some(m)) => m.config["StopSignal"]
                .as_str()
                .and_then(signal_number)
                .unwrap_or(SIGTERM),
            _ => SIGTERM,
        }
    }

    /// RemoveContainer: force-stops it, deletes its task and record; none is fine.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let Some(r) = self.find(id).await? else {
            return Ok(());
        };
        self.stop_record(&r, Duration::ZERO).await?;
        match self.berthd.delete_task(&r.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        match self.berthd.delete_container(&r.id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let _ = std::fs::remove_dir_all(self.state_dir.join("containers").join(&r.id));
        tracing::info!(container = %r.id, "container removed");
        Ok(())
    }

    /// StopPodSandbox: its containers are killed first, then the sandbox is torn down.
    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        if let Some(s) = self.sandboxes.get(id).await? {
            for c in self.of_sandbox(&s.id).await? {
                if let Some(r) = self.find(&c).await? {
                    self.stop_record(&r, Duration::ZERO).await?;
                }
            }
        }
        self.sandboxes.stop(id).await
    }

    /// RemovePodSandbox: its containers are removed, then the sandbox.
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        if let Some(s) = self.sandboxes.get(id).await? {
            for c in self.of_sandbox(&s.id).await? {
                self.remove(&c).await?;
            }
        }
        self.sandboxes.remove(id).await
    }

    /// ReopenContainerLog: the shim opens the log path again (kubelet renamed the file).
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        let r = self.get(id).await?;
        match self.task(&r.id).await? {
            Some(t) if t.status == "running" => self.berthd.reopen_log(&r.id).await,
            _ => Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                r.id
            ))),
        }
    }

    /// UpdateContainerResources: the record's spec (for the next start) and, for a running
    /// container, its cgroup now.
    pub async fn update_resources(&self, id: &str, res: &LinuxContainerResources) -> Result<()> {
        let r = self.get(id).await?;
        let mut c = self.berthd.container(&r.id).await?;
        let mut spec: serde_json::Value = serde_json::from_slice(&c.spec)
            .map_err(|e| Error::Corrupt(format!("container {}: OCI spec: {e}", r.id)))?;
        let new = super::spec::resources(Some(res));
        let devices = spec["linux"]["resources"]["devices"].clone();
        spec["linux"]["resources"] = new.clone();
        spec["linux"]["resources"]["devices"] = devices;
        let cgroup = spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        c.spec = serde_json::to_vec_pretty(&spec).expect("JSON of plain values");
        self.berthd.update_container(c, &["spec"]).await?;
        if let Some(t) = self.task(&r.id).await? {
            if t.status == "running" {
                super::stats::apply_resources(&cgroup, res)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("QUIT"), Some(3));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
        assert_eq!(signal_number(Signal::Sigwinch.as_str_name()), Some(28));
    }
}
