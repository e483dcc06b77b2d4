//! CRI containers, containerd's CRI design on berth's pieces:
//!
//! - a container is a berthd container record (in `k8s.io`) made from the image with a
//!   whole OCI spec berth-cri builds ([`spec`], [`security`]); berthd prepares its rootfs
//!   snapshot and resolves its user in the image's `/etc/passwd`;
//! - CreateContainer makes the record (state CREATED); StartContainer creates the task with
//!   the CRI log path (the shim writes kubelet's log format) and starts it (RUNNING); the
//!   task stays after the process exits (EXITED: exit code, finish time and the OOM flag
//!   come from berthd's Tasks.Get) until RemoveContainer deletes task and record;
//! - everything berth-cri knows of a container is on its record: labels
//!   ([`crate::labels`]: kind, name, sandbox, image ID, log path, start time) and the
//!   `ContainerConfig` in the spec's annotation — so a restarted berth-cri carries on;
//! - names are reserved like sandbox names ([`crate::sandbox::names`]): in memory while a
//!   CreateContainer runs, then by the record.
//!
//! One module per operation: [`create`], [`lifecycle`] (start, stop, remove, reopen the
//! log, update resources), [`view`] (status, list), [`stats`], [`exec_sync`], [`events`].

pub mod create;
pub mod events;
pub mod exec_sync;
pub mod lifecycle;
pub mod security;
pub mod spec;
pub mod stats;
pub mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use prost::Message as _;

use crate::berthd::Berthd;
use crate::error::{Error, Result};
use crate::images::Images;
use crate::labels;
use crate::proto::{ContainerConfig, ContainerState};
use crate::sandbox::names::Names;
use crate::sandbox::Sandboxes;

/// The container side of berth-cri.
pub struct Containers {
    berthd: Arc<Berthd>,
    sandboxes: Arc<Sandboxes>,
    images: Arc<Images>,
    names: Names,
    state_dir: PathBuf,
    /// Previous CPU readings by container ID (usage in ns, at ns), for `usage_nano_cores`:
    /// a cache of measurements, not state.
    cpu: std::sync::Mutex<HashMap<String, (u64, i64)>>,
}

/// A container as berthd's record and task say.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub labels: HashMap<String, String>,
    /// The berthd image record it was made from.
    pub image_name: String,
}

impl Record {
    fn label(&self, k: &str) -> &str {
        self.labels.get(k).map_or("", String::as_str)
    }

    /// The image ID (config digest).
    pub fn image_id(&self) -> &str {
        self.label(labels::CONTAINER_IMAGE_ID)
    }

    /// The CRI log file ("": none).
    pub fn log_path(&self) -> &str {
        self.label(labels::CONTAINER_LOG_PATH)
    }

    /// Unix nanoseconds of the start (0: not started, or not recorded).
    pub fn started_at(&self) -> i64 {
        self.label(labels::CONTAINER_STARTED_AT)
            .parse()
            .unwrap_or(0)
    }
}

/// Encodes a config for [`labels::CONTAINER_CONFIG_ANNOTATION`].
pub fn encode_config(c: &ContainerConfig) -> String {
    base64::engine::general_purpose::STANDARD.encode(c.encode_to_vec())
}

/// Reads a berthd container as a CRI container; `None` when it is none.
pub fn record_of(c: &berth_api::proto::containers::Container) -> Option<Result<Record>> {
    if c.labels.get(labels::KIND).map(String::as_str) != Some(labels::KIND_CONTAINER) {
        return None;
    }
    let parse = || -> Result<Record> {
        let config = labels::stored_config::<ContainerConfig>(
            c,
            "container",
            labels::CONTAINER_CONFIG_ANNOTATION,
        )?;
        Ok(Record {
            id: c.id.clone(),
            sandbox_id: c
                .labels
                .get(labels::CONTAINER_SANDBOX)
                .cloned()
                .unwrap_or_default(),
            config,
            created_at: c.created_at,
            labels: c.labels.clone().into_iter().collect(),
            image_name: c.image.clone(),
        })
    };
    Some(parse())
}

/// A container's state from its task: none is CREATED; created/running/paused/stopped map
/// to CREATED/RUNNING/RUNNING/EXITED; a task whose shim is gone is UNKNOWN.
pub fn state_of(task: Option<&berth_api::proto::tasks::Process>) -> ContainerState {
    match task.map(|t| t.status.as_str()) {
        None | Some("created") => ContainerState::ContainerCreated,
        Some("running") | Some("paused") | Some("pausing") => ContainerState::ContainerRunning,
        Some("stopped") => ContainerState::ContainerExited,
        Some(_) => ContainerState::ContainerUnknown,
    }
}

impl Containers {
    /// Containers of berthd in sandboxes of `sandboxes`, from images of `images`.
    pub fn new(
        berthd: Arc<Berthd>,
        sandboxes: Arc<Sandboxes>,
        images: Arc<Images>,
        state_dir: PathBuf,
    ) -> Self {
        Self {
            berthd,
            sandboxes,
            images,
            names: Names::default(),
            state_dir,
            cpu: Default::default(),
        }
    }

    /// Every finished container record (in-flight CreateContainer calls are left out).
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

    /// The record of the container `id` names: the whole ID or a unique prefix.
    async fn find(&self, id: &str) -> Result<Option<Record>> {
        if id.is_empty() {
            return Err(Error::InvalidArgument(
                "container ID must not be empty".into(),
            ));
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
                "container ID prefix {id:?} is ambiguous ({n} containers)"
            ))),
        }
    }

    /// The record of `id`, or NOT_FOUND.
    async fn get(&self, id: &str) -> Result<Record> {
        self.find(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("container {id:?} not found")))
    }

    /// The task of container `id` (`None`: none).
    async fn task(&self, id: &str) -> Result<Option<berth_api::proto::tasks::Process>> {
        match self.berthd.process(id, "").await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The containers of sandbox `sandbox_id`, for its stop and removal.
    pub async fn of_sandbox(&self, sandbox_id: &str) -> Result<Vec<String>> {
        Ok(self
            .records()
            .await?
            .into_iter()
            .filter(|r| r.sandbox_id == sandbox_id)
            .map(|r| r.id)
            .collect())
    }
}
