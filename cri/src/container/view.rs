//! ContainerStatus and ListContainers: berthd's records and tasks seen as CRI containers.
//! The state is the task's ([`super::state_of`]); an exited container's exit code, finish
//! time and `OOMKilled` reason come from berthd's Tasks.Get, which the shim recorded.

use std::collections::HashMap;

use serde_json::json;

use super::{state_of, Containers, Record};
use crate::error::Result;
use crate::proto::{
    Container, ContainerFilter, ContainerResources, ContainerState, ContainerStatus,
    ContainerStatusResponse, ContainerUser, ImageSpec, LinuxContainerUser,
};

/// The reason kubelet shows for an exited container (containerd's words).
pub fn exit_reason(code: u32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// The user a running process has: uid, gid and groups from `/proc/<pid>/status`.
fn user_of(pid: u32) -> Option<LinuxContainerUser> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |k: &str| {
        s.lines().find_map(|l| l.strip_prefix(k)).map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse::<i64>().ok())
                .collect::<Vec<_>>()
        })
    };
    let uid = *field("Uid:")?.first()?;
    let gid = *field("Gid:")?.first()?;
    Some(LinuxContainerUser {
        uid,
        gid,
        supplemental_groups: field("Groups:").unwrap_or_default(),
    })
}

/// Whether a container passes a ListContainers filter.
fn matches(f: &ContainerFilter, r: &Record, state: ContainerState) -> bool {
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || r.sandbox_id.starts_with(&f.pod_sandbox_id))
        && f.state.as_ref().is_none_or(|s| s.state == state as i32)
        && f.label_selector
            .iter()
            .all(|(k, v)| r.config.labels.get(k) == Some(v))
}

impl Containers {
    /// ContainerStatus; `verbose` adds an `info` JSON (pid, sandbox, cgroup).
    pub async fn status(&self, id: &str, verbose: bool) -> Result<ContainerStatusResponse> {
        let r = self.get(id).await?;
        let task = self.task(&r.id).await?;
        let state = state_of(task.as_ref());
        let (mut finished_at, mut exit_code, mut reason) = (0, 0, String::new());
        if let (ContainerState::ContainerExited, Some(t)) = (state, &task) {
            finished_at = t.exited_at;
            exit_code = t.exit_status as i32;
            reason = exit_reason(t.exit_status, t.oom_killed).to_owned();
        }
        let mut started_at = r.started_at();
        if started_at == 0 && state != ContainerState::ContainerCreated {
            // Started, but berth-cri died before recording when: the creation is the bound.
            started_at = r.created_at;
        }
        let (image_spec, image_ref) = self.image_names(&r).await;
        let user = task
            .as_ref()
            .filter(|t| t.status == "running")
            .and_then(|t| user_of(t.pid))
            .map(|linux| ContainerUser { linux: Some(linux) });
        let status = ContainerStatus {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            state: state as i32,
            created_at: r.created_at,
            started_at,
            finished_at,
            exit_code,
            image: Some(image_spec),
            image_ref,
            reason,
            message: String::new(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
            mounts: r.config.mounts.clone(),
            log_path: r.log_path().to_owned(),
            resources: r
                .config
                .linux
                .as_ref()
                .and_then(|l| l.resources.clone())
                .map(|linux| ContainerResources {
                    linux: Some(linux),
                    windows: None,
                }),
            image_id: r.image_id().to_owned(),
            user,
            stop_signal: r.config.stop_signal,
        };
        let mut info = HashMap::new();
        if verbose {
            let v = json!({
                "pid": task.as_ref().map_or(0, |t| t.pid),
                "sandboxID": r.sandbox_id,
                "image": r.image_name,
                "oomKilled": task.as_ref().is_some_and(|t| t.oom_killed),
            });
            info.insert("info".to_owned(), v.to_string());
        }
        Ok(ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }

    /// The CRI `image` (a repo tag when the image has one) and `image_ref` (a repo digest,
    /// else the ID) of a container, containerd's choice.
    async fn image_names(&self, r: &Record) -> (ImageSpec, String) {
        let given = r.config.image.clone().unwrap_or_default();
        let id = r.image_id().to_owned();
        match self.images.status(&id).await {
            Ok(Some(img)) => {
                let spec = ImageSpec {
                    image: img
                        .repo_tags
                        .first()
                        .cloned()
                        .unwrap_or(given.image.clone()),
                    annotations: given.annotations.clone(),
                    user_specified_image: given.user_specified_image.clone(),
                    runtime_handler: given.runtime_handler.clone(),
                    image_ref: id.clone(),
                };
                (spec, img.repo_digests.first().cloned().unwrap_or(id))
            }
            _ => (given, id),
        }
    }

    /// ListContainers.
    pub async fn list(&self, filter: Option<&ContainerFilter>) -> Result<Vec<Container>> {
        let tasks: HashMap<String, berth_api::proto::tasks::Process> = self
            .berthd
            .tasks()
            .await?
            .into_iter()
            .map(|t| (t.container_id.clone(), t))
            .collect();
        let mut out = Vec::new();
        for r in self.records().await? {
            let state = state_of(tasks.get(&r.id));
            if filter.is_some_and(|f| !matches(f, &r, state)) {
                continue;
            }
            out.push(Container {
                id: r.id.clone(),
                pod_sandbox_id: r.sandbox_id.clone(),
                metadata: r.config.metadata.clone(),
                image: r.config.image.clone(),
                image_ref: r.image_id().to_owned(),
                state: state as i32,
                created_at: r.created_at,
                labels: r.config.labels.clone(),
                annotations: r.config.annotations.clone(),
                image_id: r.image_id().to_owned(),
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_this_process_user() {
        assert_eq!(exit_reason(137, true), "OOMKilled");
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(1, false), "Error");
        let me = user_of(std::process::id()).unwrap();
        assert_eq!(me.uid, nix::unistd::getuid().as_raw() as i64);
    }
}
