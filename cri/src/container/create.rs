//! CreateContainer: hold the name, find the sandbox (READY) and the image, build the spec,
//! write the record (berthd prepares the rootfs snapshot). kubelet retries a CreateContainer
//! that timed out on its side with the same name; like RunPodSandbox (containerd#4604's
//! trap), a retry while the first is in flight fails at once naming it, and a retry after it
//! finished gets the same container back while it has not started (else a clear
//! ALREADY_EXISTS); every failure path frees the name (the guard, and no record is left).

use berth_api::proto::containers as cpb;

use super::{spec, Containers};
use crate::error::{Error, Result};
use crate::labels;
use crate::proto::{ContainerConfig, NamespaceMode, PodSandboxConfig};

/// containerd's `makeContainerName`: `<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>`.
pub fn container_name(c: &ContainerConfig, pod: &PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    let p = pod.metadata.clone().unwrap_or_default();
    format!(
        "{}_{}_{}_{}_{}",
        m.name, p.name, p.namespace, p.uid, m.attempt
    )
}

impl Containers {
    /// CreateContainer in sandbox `sandbox_id`; returns the container ID.
    pub async fn create(&self, sandbox_id: &str, config: ContainerConfig) -> Result<String> {
        let md = config
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("container config has no metadata".into()))?;
        if md.name.is_empty() {
            return Err(Error::InvalidArgument(
                "container metadata needs a name".into(),
            ));
        }
        let image_ref = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::InvalidArgument("container config names no image".into()))?;
        let (sandbox, pause_pid, files) = self.sandboxes.for_container(sandbox_id).await?;
        let name = container_name(&config, &sandbox.config);
        let id = crate::sandbox::new_id()?;
        let _hold = self.names.hold(&name, &id).map_err(|holder| {
            Error::AlreadyExists(format!(
                "container name {name:?} is reserved by container {holder}, which a CreateContainer in flight is still creating; retry when it has finished"
            ))
        })?;
        if let Some(existing) = self.find_by_name(&name).await? {
            if existing.sandbox_id == sandbox.id && self.task(&existing.id).await?.is_none() {
                tracing::info!(container = %existing.id, %name, "CreateContainer retried: the container exists and has not started");
                return Ok(existing.id);
            }
            return Err(Error::AlreadyExists(format!(
                "container name {name:?} is reserved by container {}: remove it, or create the container with a new attempt",
                existing.id
            )));
        }
        let (image, image_name) = self.images.resolve(&image_ref).await?;
        let target_pid = self.target_pid(&config).await?;
        let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let spec = spec::build(&spec::Input {
            namespace: self.berthd.namespace(),
            id: &id,
            config: &config,
            sandbox: &sandbox,
            sandbox_pid: pause_pid,
            sandbox_files: &files,
            image: &image,
            target_pid,
            config_annotation: super::encode_config(&config),
            cgroup_v2,
        })?;
        let log_path = if config.log_path.is_empty() || sandbox.config.log_directory.is_empty() {
            String::new()
        } else {
            std::path::Path::new(&sandbox.config.log_directory)
                .join(&config.log_path)
                .display()
                .to_string()
        };
        let mut l = vec![
            (labels::KIND.to_owned(), labels::KIND_CONTAINER.to_owned()),
            (labels::CONTAINER_NAME.to_owned(), name.clone()),
            (labels::CONTAINER_SANDBOX.to_owned(), sandbox.id.clone()),
            (labels::CONTAINER_IMAGE_ID.to_owned(), image.id.clone()),
        ];
        if !log_path.is_empty() {
            l.push((labels::CONTAINER_LOG_PATH.to_owned(), log_path));
        }
        let record = cpb::Container {
            id: id.clone(),
            image: image_name,
            labels: l.into_iter().collect(),
            runtime: sandbox.runtime_handler.clone(),
            spec,
            ..Default::default()
        };
        self.berthd.create_container(record).await?;
        tracing::info!(container = %id, %name, sandbox = %sandbox.id, image = %image.id, "container created");
        Ok(id)
    }

    /// The container record holding `name`.
    async fn find_by_name(&self, name: &str) -> Result<Option<super::Record>> {
        for c in self.berthd.containers().await? {
            if c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(name) {
                if let Some(r) = super::record_of(&c) {
                    return r.map(Some);
                }
            }
        }
        Ok(None)
    }

    /// The init pid of the target container of PID mode TARGET (`None` for other modes).
    async fn target_pid(&self, c: &ContainerConfig) -> Result<Option<u32>> {
        let o = c
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let Some(o) = o.filter(|o| o.pid == NamespaceMode::Target as i32) else {
            return Ok(None);
        };
        let target = self.get(&o.target_id).await?;
        match self.task(&target.id).await? {
            Some(t) if t.status == "running" => Ok(Some(t.pid)),
            _ => Err(Error::FailedPrecondition(format!(
                "target container {} of the PID namespace is not running",
                target.id
            ))),
        }
    }
}
