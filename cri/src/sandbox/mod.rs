//! Pod sandboxes, containerd's CRI design on berth's pieces:
//!
//! - a sandbox is a berthd container (no image) whose task is `berth-pause`, the tiny
//!   applet of berth's own binary holding the pod's namespaces ([`spec`]);
//! - its network namespace is pinned on a file under the netns directory *before* CNI ADD
//!   and before the pause process exists ([`crate::netns`]), so the network is set up in a
//!   namespace no process of the pod can race, and the spec names that path;
//! - everything berth-cri knows of a sandbox is on that container (labels and the spec's
//!   annotation, [`crate::labels`]), so ListPodSandbox and PodSandboxStatus read berthd,
//!   and a restarted berth-cri carries on;
//! - names are reserved as [`names`] describes.
//!
//! The operations live one per module: [`run`], [`stop`] (StopPodSandbox and
//! RemovePodSandbox, which share the teardown), [`view`] (status and list).

pub mod files;
pub mod names;
mod run;
pub mod spec;
mod stop;
mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use prost::Message as _;

use crate::berthd::Berthd;
use crate::cni::Cni;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::labels;
use crate::proto::PodSandboxConfig;
use names::Names;
pub(crate) use run::new_id;

/// The sandbox side of berth-cri.
pub struct Sandboxes {
    berthd: Arc<Berthd>,
    cni: Arc<Cni>,
    names: Names,
    netns_dir: PathBuf,
    pause_binary: PathBuf,
    library_dirs: Vec<PathBuf>,
    sandbox_image: String,
    del_attempts: u32,
    state_dir: PathBuf,
}

/// A sandbox as berthd's record says.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub config: PodSandboxConfig,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub labels: HashMap<String, String>,
    pub runtime_handler: String,
}

impl Record {
    /// The pinned network namespace, if the pod has its own.
    pub fn netns(&self) -> Option<PathBuf> {
        self.labels.get(labels::NETNS).map(PathBuf::from)
    }

    /// The pod's IPs, primary first.
    pub fn ips(&self) -> Vec<String> {
        self.labels
            .get(labels::IPS)
            .map(|s| {
                s.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Encodes a config for [`labels::SANDBOX_CONFIG_ANNOTATION`].
pub fn encode_config(c: &PodSandboxConfig) -> String {
    base64::engine::general_purpose::STANDARD.encode(c.encode_to_vec())
}

/// Reads a berthd container as a sandbox; `None` when it is none.
pub fn record_of(c: &berth_api::proto::containers::Container) -> Option<Result<Record>> {
    if c.labels.get(labels::KIND).map(String::as_str) != Some(labels::KIND_SANDBOX) {
        return None;
    }
    let parse = || -> Result<Record> {
        let config = labels::stored_config::<PodSandboxConfig>(
            c,
            "sandbox",
            labels::SANDBOX_CONFIG_ANNOTATION,
        )?;
        Ok(Record {
            id: c.id.clone(),
            config,
            created_at: c.created_at,
            labels: c.labels.clone().into_iter().collect(),
            runtime_handler: c
                .labels
                .get(labels::RUNTIME_HANDLER)
                .cloned()
                .unwrap_or_default(),
        })
    };
    Some(parse())
}

impl Sandboxes {
    /// Sandboxes of berthd with networking through `cni`.
    pub fn new(berthd: Arc<Berthd>, cni: Arc<Cni>, cfg: &Config) -> std::io::Result<Self> {
        let pause_binary = if cfg.pause_binary.as_os_str().is_empty() {
            std::env::current_exe()?
        } else {
            cfg.pause_binary.clone()
        };
        let library_dirs = spec::library_dirs(&pause_binary);
        if !library_dirs.is_empty() {
            tracing::info!(binary = %pause_binary.display(), ?library_dirs, "the pause binary is dynamically linked: sandboxes bind the host's library directories read-only");
        }
        Ok(Self {
            berthd,
            cni,
            names: Names::default(),
            netns_dir: cfg.netns_dir.clone(),
            pause_binary,
            library_dirs,
            sandbox_image: cfg.sandbox_image.clone(),
            del_attempts: cfg.cni.del_attempts.max(1),
            state_dir: cfg.state_dir.clone(),
        })
    }

    /// Every finished sandbox record (in-flight RunPodSandbox calls are left out).
    async fn records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for c in self.berthd.containers().await? {
            match record_of(&c) {
                Some(Ok(r)) if !self.names.in_flight(&r.id) => out.push(r),
                Some(Ok(_)) | None => {}
                Some(Err(e)) => tracing::warn!("{e}"),
            }
        }
        Ok(out)
    }

    /// The record of the sandbox `id` names: the whole ID or a unique prefix (crictl
    /// shows truncated IDs). `None` when there is none.
    async fn find(&self, id: &str) -> Result<Option<Record>> {
        if id.is_empty() {
            return Err(Error::InvalidArgument(
                "pod sandbox ID must not be empty".into(),
            ));
        }
        if self.names.in_flight(id) {
            return Err(Error::FailedPrecondition(format!(
                "sandbox {id} is still being created by RunPodSandbox"
            )));
        }
        let mut matches: Vec<Record> = self
            .records()
            .await?
            .into_iter()
            .filter(|r| r.id.starts_with(id))
            .collect();
        if let Some(i) = matches.iter().position(|r| r.id == id) {
            return Ok(Some(matches.swap_remove(i)));
        }
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.pop()),
            n => Err(Error::InvalidArgument(format!(
                "pod sandbox ID prefix {id:?} is ambiguous ({n} sandboxes)"
            ))),
        }
    }

    /// Sandbox `id` (whole or a unique prefix) for a container being created in it: its
    /// record, the pid of its pause process (the namespaces to join) and the directory of
    /// its shared files ([`files`]). A sandbox that is not READY is refused.
    pub async fn for_container(&self, id: &str) -> Result<(Record, u32, PathBuf)> {
        let rec = self
            .find(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?} not found")))?;
        let pid = self.running(&rec.id).await?.ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready (its pause process is not running)",
                rec.id
            ))
        })?;
        let host_network = rec.netns().is_none();
        let ips = rec.ips();
        let dir = files::ensure(
            &self.state_dir,
            &rec.id,
            &rec.config,
            ips.first().map(String::as_str),
            host_network,
        )?;
        Ok((rec, pid, dir))
    }

    /// Sandbox `id` (whole or a unique prefix), if it exists.
    pub async fn get(&self, id: &str) -> Result<Option<Record>> {
        self.find(id).await
    }

    /// Every sandbox, with whether it is READY.
    pub async fn all(&self) -> Result<Vec<(Record, bool)>> {
        let running: std::collections::HashSet<String> = self
            .berthd
            .tasks()
            .await?
            .into_iter()
            .filter(|t| t.status == "running")
            .map(|t| t.container_id)
            .collect();
        Ok(self
            .records()
            .await?
            .into_iter()
            .map(|r| {
                let ready = running.contains(&r.id);
                (r, ready)
            })
            .collect())
    }

    /// Whether the task of sandbox `id` runs (the sandbox is READY), and its pid.
    async fn running(&self, id: &str) -> Result<Option<u32>> {
        match self.berthd.task(id).await {
            Ok(p) if p.status == "running" => Ok(Some(p.pid)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}
