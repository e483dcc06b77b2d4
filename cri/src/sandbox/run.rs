//! RunPodSandbox: hold the name, write the record (the durable reservation, and what a
//! restarted berth-cri or a StopPodSandbox after a crash needs to undo the rest), pin the
//! network namespace, CNI ADD, record the IPs, start the pause task. Any failure after the
//! record exists runs the same teardown as StopPodSandbox and deletes the record, so the
//! name is free again.

use std::io::Read;

use berth_api::proto::containers as cpb;

use super::names::sandbox_name;
use super::{spec, Record, Sandboxes};
use crate::cni::PodNetwork;
use crate::error::{Error, Result};
use crate::labels;
use crate::netns;
use crate::proto::{NamespaceMode, PodSandboxConfig, Protocol};

/// A new sandbox or container ID: 32 random bytes in hex, containerd's length (berthd names
/// shim sockets by a hash, so the length of an ID does not matter to unix socket paths).
pub(crate) fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|source| Error::Io {
            what: "read /dev/urandom".into(),
            source,
        })?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// kubelet's cgroupfs parents are paths; systemd's are `…slice` units (`a.slice:prefix:name`).
fn check_cgroup_parent(parent: &str) -> Result<()> {
    if parent.ends_with(".slice") || parent.contains(':') {
        return Err(Error::InvalidArgument(format!(
            "cgroup parent {parent:?} is a systemd slice: berth-cri supports the cgroupfs driver only (kubelet cgroupDriver: cgroupfs)"
        )));
    }
    Ok(())
}

/// The CNI view of a pod.
pub(super) fn pod_network<'a>(
    id: &'a str,
    netns: &'a std::path::Path,
    c: &'a PodSandboxConfig,
) -> PodNetwork<'a> {
    let md = c.metadata.as_ref();
    PodNetwork {
        id,
        netns,
        name: md.map_or("", |m| m.name.as_str()),
        namespace: md.map_or("", |m| m.namespace.as_str()),
        uid: md.map_or("", |m| m.uid.as_str()),
        port_mappings: c
            .port_mappings
            .iter()
            .filter(|p| p.host_port > 0)
            .map(|p| {
                let proto = match Protocol::try_from(p.protocol) {
                    Ok(Protocol::Udp) => "udp",
                    Ok(Protocol::Sctp) => "sctp",
                    _ => "tcp",
                };
                (p.container_port, p.host_port, proto, p.host_ip.clone())
            })
            .collect(),
    }
}

impl Sandboxes {
    /// RunPodSandbox; returns the sandbox ID.
    pub async fn run(&self, config: PodSandboxConfig, runtime_handler: &str) -> Result<String> {
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("sandbox config has no metadata".into()))?;
        if md.name.is_empty() || md.namespace.is_empty() || md.uid.is_empty() {
            return Err(Error::InvalidArgument(
                "sandbox metadata needs a name, a namespace and a uid".into(),
            ));
        }
        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        check_cgroup_parent(&cgroup_parent)?;
        let name = sandbox_name(md);
        let id = new_id()?;
        let _hold = self.names.hold(&name, &id).map_err(|holder| {
            Error::AlreadyExists(format!(
                "sandbox name {name:?} is reserved by sandbox {holder}, which a RunPodSandbox in flight is still creating; retry when it has finished"
            ))
        })?;
        if let Some(existing) = self.find_by_name(&name).await? {
            if self.running(&existing.id).await?.is_some() {
                tracing::info!(sandbox = %existing.id, %name, "RunPodSandbox retried: the sandbox exists and is ready");
                return Ok(existing.id);
            }
            return Err(Error::AlreadyExists(format!(
                "sandbox name {name:?} is reserved by sandbox {} (NOTREADY): stop and remove it, or run the pod with a new attempt",
                existing.id
            )));
        }
        let (net_mode, _, _) = spec::namespace_modes(&config);
        let netns =
            (net_mode != NamespaceMode::Node).then(|| netns::path_for(&self.netns_dir, &id));
        let spec = spec::build(&spec::Input {
            namespace: self.berthd.namespace(),
            id: &id,
            config: &config,
            netns: netns.as_deref(),
            pause_binary: &self.pause_binary,
            library_dirs: &self.library_dirs,
            config_annotation: super::encode_config(&config),
        });
        let mut record_labels = vec![
            (labels::KIND.to_owned(), labels::KIND_SANDBOX.to_owned()),
            (labels::SANDBOX_NAME.to_owned(), name.clone()),
            (labels::SANDBOX_IMAGE.to_owned(), self.sandbox_image.clone()),
            (
                labels::RUNTIME_HANDLER.to_owned(),
                runtime_handler.to_owned(),
            ),
        ];
        if let Some(p) = &netns {
            record_labels.push((labels::NETNS.to_owned(), p.display().to_string()));
        }
        if !cgroup_parent.is_empty() {
            record_labels.push((labels::CGROUP_PARENT.to_owned(), cgroup_parent));
        }
        let record = cpb::Container {
            id: id.clone(),
            labels: record_labels.into_iter().collect(),
            runtime: runtime_handler.to_owned(),
            spec,
            ..Default::default()
        };
        let created = self.berthd.create_container(record).await?;
        let rec = Record {
            id: id.clone(),
            created_at: created.created_at,
            labels: created.labels.into_iter().collect(),
            config,
            runtime_handler: runtime_handler.to_owned(),
        };
        match self.start(&rec).await {
            Ok(ips) => {
                tracing::info!(sandbox = %id, %name, ?ips, "sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, %name, "RunPodSandbox failed, undoing: {}", berth_api::errdefs::chain(&e));
                if let Err(t) = self.teardown(&rec).await {
                    tracing::warn!(sandbox = %id, "teardown after a failed RunPodSandbox: {}", berth_api::errdefs::chain(&t));
                }
                if let Err(d) = self.berthd.delete_container(&id).await {
                    tracing::warn!(sandbox = %id, "cannot delete the record of a failed RunPodSandbox: {}", berth_api::errdefs::chain(&d));
                }
                Err(e)
            }
        }
    }

    /// The sandbox record holding `name`, in flight or not.
    async fn find_by_name(&self, name: &str) -> Result<Option<Record>> {
        for c in self.berthd.containers().await? {
            if c.labels.get(labels::SANDBOX_NAME).map(String::as_str) == Some(name) {
                if let Some(r) = super::record_of(&c) {
                    return r.map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The steps after the record: network, then the pause task. Returns the pod's IPs.
    async fn start(&self, rec: &Record) -> Result<Vec<String>> {
        let mut ips = Vec::new();
        if let Some(path) = rec.netns() {
            netns::create(&path)?;
            let pod = pod_network(&rec.id, &path, &rec.config);
            let att = self.cni.add(&pod).await?;
            ips = att.ips.iter().map(|ip| ip.to_string()).collect();
            let result = att.result.to_string();
            let mut l = vec![
                (labels::IPS.to_owned(), ips.join(",")),
                (labels::NETWORK.to_owned(), att.network.clone()),
            ];
            if labels::CNI_RESULT.len() + result.len() <= labels::MAX_LABEL {
                l.push((labels::CNI_RESULT.to_owned(), result));
            }
            self.berthd.update_labels(&rec.id, l).await?;
        }
        self.berthd.create_and_start_task(&rec.id).await?;
        Ok(ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_cgroup_parents() {
        let a = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_id().unwrap());
        check_cgroup_parent("").unwrap();
        check_cgroup_parent("/kubepods/besteffort/pod1234").unwrap();
        let e = check_cgroup_parent("kubepods-besteffort-pod1234.slice").unwrap_err();
        assert!(e.to_string().contains("cgroupfs driver only"), "{e}");
    }
}
