//! PodSandboxStatus and ListPodSandbox: berthd's records and tasks seen as CRI sandboxes. A
//! sandbox is READY while its pause task runs, NOTREADY otherwise.

use std::collections::HashMap;

use serde_json::json;

use super::{spec, Record, Sandboxes};
use crate::error::{Error, Result};
use crate::labels;
use crate::proto::{
    LinuxPodSandboxStatus, Namespace, NamespaceOption, PodIp, PodSandbox, PodSandboxFilter,
    PodSandboxNetworkStatus, PodSandboxState, PodSandboxStatus, PodSandboxStatusResponse,
};

fn state(ready: bool) -> i32 {
    if ready {
        PodSandboxState::SandboxReady as i32
    } else {
        PodSandboxState::SandboxNotready as i32
    }
}

/// Whether a sandbox passes a ListPodSandbox filter (ID prefix, state, every label).
fn matches(f: &PodSandboxFilter, r: &Record, ready: bool) -> bool {
    (f.id.is_empty() || r.id.starts_with(&f.id))
        && f.state.as_ref().is_none_or(|s| s.state == state(ready))
        && f.label_selector
            .iter()
            .all(|(k, v)| r.config.labels.get(k) == Some(v))
}

impl Sandboxes {
    /// PodSandboxStatus; `verbose` adds an `info` JSON (pid, namespace path, CNI result,
    /// cgroups) like containerd's.
    pub async fn status(&self, id: &str, verbose: bool) -> Result<PodSandboxStatusResponse> {
        let rec = self
            .find(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?} not found")))?;
        let pid = self.running(&rec.id).await?;
        let ips = rec.ips();
        let (net, pid_mode, ipc) = spec::namespace_modes(&rec.config);
        let status = PodSandboxStatus {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: state(pid.is_some()),
            created_at: rec.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: ips.first().cloned().unwrap_or_default(),
                additional_ips: ips
                    .iter()
                    .skip(1)
                    .map(|ip| PodIp { ip: ip.clone() })
                    .collect(),
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: net as i32,
                        pid: pid_mode as i32,
                        ipc: ipc as i32,
                        ..Default::default()
                    }),
                }),
            }),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
            runtime_handler: rec.runtime_handler.clone(),
        };
        let mut info = HashMap::new();
        if verbose {
            let get = |k: &str| rec.labels.get(k).cloned().unwrap_or_default();
            let cni_result = rec
                .labels
                .get(labels::CNI_RESULT)
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
            let v = json!({
                "pid": pid.unwrap_or(0),
                "netnsPath": get(labels::NETNS),
                "network": get(labels::NETWORK),
                "cniResult": cni_result,
                "sandboxImage": get(labels::SANDBOX_IMAGE),
                "cgroupParent": get(labels::CGROUP_PARENT),
                "cgroupsPath": spec::cgroups_path(
                    self.berthd.namespace(),
                    spec::cgroup_parent(&rec.config),
                    &rec.id
                ),
                "runtimeHandler": rec.runtime_handler,
                "pauseBinary": self.pause_binary,
                "name": get(labels::SANDBOX_NAME),
            });
            info.insert("info".to_owned(), v.to_string());
        }
        Ok(PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: Vec::new(),
            timestamp: crate::now_nanos(),
        })
    }

    /// ListPodSandbox.
    pub async fn list(&self, filter: Option<&PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
        let running: HashMap<String, bool> = self
            .berthd
            .tasks()
            .await?
            .into_iter()
            .map(|t| (t.container_id, t.status == "running"))
            .collect();
        let mut out = Vec::new();
        for r in self.records().await? {
            let ready = running.get(&r.id).copied().unwrap_or(false);
            if filter.is_some_and(|f| !matches(f, &r, ready)) {
                continue;
            }
            out.push(PodSandbox {
                id: r.id,
                metadata: r.config.metadata,
                state: state(ready),
                created_at: r.created_at,
                labels: r.config.labels,
                annotations: r.config.annotations,
                runtime_handler: r.runtime_handler,
            });
        }
        out.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PodSandboxConfig, PodSandboxStateValue};

    #[test]
    fn filters() {
        let r = Record {
            id: "abcdef".into(),
            config: PodSandboxConfig {
                labels: [("app".to_owned(), "web".to_owned())].into_iter().collect(),
                ..Default::default()
            },
            created_at: 1,
            labels: HashMap::new(),
            runtime_handler: String::new(),
        };
        let all = PodSandboxFilter::default();
        assert!(matches(&all, &r, false));
        let by_id = PodSandboxFilter {
            id: "abc".into(),
            ..Default::default()
        };
        assert!(matches(&by_id, &r, true));
        let ready = PodSandboxFilter {
            state: Some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        };
        assert!(matches(&ready, &r, true));
        assert!(!matches(&ready, &r, false));
        let mut by_label = PodSandboxFilter::default();
        by_label.label_selector.insert("app".into(), "web".into());
        assert!(matches(&by_label, &r, false));
        by_label.label_selector.insert("tier".into(), "db".into());
        assert!(!matches(&by_label, &r, false));
    }
}
