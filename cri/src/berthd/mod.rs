//! berth-cri's client of berthd: the few ttrpc calls the CRI needs, each bounded by the
//! configured timeout and sent in the CRI namespace (`k8s.io`).
//!
//! One multiplexed connection is shared by every request. When berthd goes away (restart,
//! crash) the next call fails UNAVAILABLE and drops the connection, and the one after that
//! connects again: berth-cri holds nothing that a berthd restart could invalidate.

use std::sync::Mutex;
use std::time::Duration;

use berth_api::client::{bounded, connect, ClientError};
use berth_api::errdefs::Kind;
use berth_api::proto::{
    containers as cpb, containers_ttrpc, content as ctpb, content_ttrpc, events_ttrpc,
    images as ipb, images_ttrpc, introspection as inpb, introspection_ttrpc, pull as ppb,
    pull_ttrpc, snapshots as spb, snapshots_ttrpc, tasks as tpb, tasks_ttrpc, version as vpb,
    version_ttrpc,
};

use crate::error::Result;

/// The generated clients over one connection.
#[derive(Clone)]
struct Conn {
    version: version_ttrpc::VersionClient,
    introspection: introspection_ttrpc::IntrospectionClient,
    containers: containers_ttrpc::ContainersClient,
    tasks: tasks_ttrpc::TasksClient,
    images: images_ttrpc::ImagesClient,
    content: content_ttrpc::ContentClient,
    pull: pull_ttrpc::PullClient,
    snapshots: snapshots_ttrpc::SnapshotsClient,
    events: events_ttrpc::EventsClient,
}

/// berthd, as berth-cri talks to it.
pub struct Berthd {
    address: String,
    namespace: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// The last connection failure, for Status (`RuntimeReady` reason).
    last_error: Mutex<Option<String>>,
}

/// Calls `$conn.$svc.$method(ctx, &req)` bounded by the timeout, dropping the connection on
/// transport failures.
macro_rules! call {
    ($self:ident, $svc:ident, $method:ident, $name:literal, $req:expr) => {{
        let c = $self.conn().await?;
        let r = bounded(
            &$self.address,
            $self.timeout,
            $name,
            c.$svc.$method($self.ctx($self.timeout), &$req),
        )
        .await;
        $self.check(r)
    }};
}

mod tasks;
pub use tasks::Exec;

impl Berthd {
    /// A client of berthd at `address` (connected on first use) in `namespace`.
    pub fn new(address: &str, namespace: &str, timeout: Duration) -> Self {
        Self {
            address: berth_api::client::normalize_address(address),
            namespace: namespace.to_owned(),
            timeout,
            conn: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
        }
    }

    /// The namespace every call names.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn ctx(&self, timeout: Duration) -> ttrpc::context::Context {
        berth_api::keys::context(&self.namespace, timeout)
    }

    async fn conn(&self) -> Result<Conn, ClientError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let inner = connect(&self.address, self.timeout)
            .await
            .inspect_err(|e| {
                *self.last_error.lock().expect("last_error lock") = Some(e.to_string());
            })?;
        let c = Conn {
            version: version_ttrpc::VersionClient::new(inner.clone()),
            introspection: introspection_ttrpc::IntrospectionClient::new(inner.clone()),
            containers: containers_ttrpc::ContainersClient::new(inner.clone()),
            tasks: tasks_ttrpc::TasksClient::new(inner.clone()),
            images: images_ttrpc::ImagesClient::new(inner.clone()),
            content: content_ttrpc::ContentClient::new(inner.clone()),
            pull: pull_ttrpc::PullClient::new(inner.clone()),
            snapshots: snapshots_ttrpc::SnapshotsClient::new(inner.clone()),
            events: events_ttrpc::EventsClient::new(inner),
        };
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Passes `r` through; a transport failure forgets the connection so the next call
    /// connects again.
    fn check<T>(&self, r: Result<T, ClientError>) -> Result<T> {
        if let Err(e) = &r {
            let transport = match e {
                ClientError::Call { source, .. } => Kind::of_error(source) == Kind::Unavailable,
                ClientError::Timeout { .. } => false,
                _ => true,
            };
            if transport {
                *self.last_error.lock().expect("last_error lock") = Some(e.to_string());
                if let Ok(mut g) = self.conn.try_lock() {
                    *g = None;
                }
            }
        }
        Ok(r?)
    }

    /// The last connection failure seen, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().expect("last_error lock").clone()
    }

    /// `Version`: (version, revision).
    pub async fn version(&self) -> Result<(String, String)> {
        let r = call!(
            self,
            version,
            version,
            "Version",
            vpb::VersionRequest::new()
        )?;
        *self.last_error.lock().expect("last_error lock") = None;
        Ok((r.version, r.revision))
    }

    /// `Introspection.Plugins` with `filters`.
    pub async fn plugins(&self, filters: Vec<String>) -> Result<Vec<inpb::Plugin>> {
        let req = inpb::PluginsRequest {
            filters,
            ..Default::default()
        };
        Ok(call!(self, introspection, plugins, "Introspection.Plugins", req)?.plugins)
    }

    /// `Containers.List`.
    pub async fn containers(&self) -> Result<Vec<cpb::Container>> {
        let req = cpb::ListContainersRequest::new();
        Ok(call!(self, containers, list, "Containers.List", req)?.containers)
    }

    /// `Containers.Create` of a record with a whole OCI spec.
    pub async fn create_container(&self, c: cpb::Container) -> Result<cpb::Container> {
        let req = cpb::CreateContainerRequest {
            container: Some(c).into(),
            ..Default::default()
        };
        let r = call!(self, containers, create, "Containers.Create", req)?;
        Ok(r.container.into_option().unwrap_or_default())
    }

    /// `Containers.Update` of some labels (`labels.<key>` masks; an empty value removes).
    pub async fn update_labels(&self, id: &str, labels: Vec<(String, String)>) -> Result<()> {
        let mask = labels.iter().map(|(k, _)| format!("labels.{k}")).collect();
        let req = cpb::UpdateContainerRequest {
            container: Some(cpb::Container {
                id: id.to_owned(),
                labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
                ..Default::default()
            })
            .into(),
            update_mask: mask,
            ..Default::default()
        };
        call!(self, containers, update, "Containers.Update", req)?;
        Ok(())
    }

    /// `Containers.Delete`.
    pub async fn delete_container(&self, id: &str) -> Result<()> {
        let req = cpb::DeleteContainerRequest {
            id: id.to_owned(),
            ..Default::default()
        };
        call!(self, containers, delete, "Containers.Delete", req)?;
        Ok(())
    }

    /// `Tasks.List`.
    pub async fn tasks(&self) -> Result<Vec<tpb::Process>> {
        let req = tpb::ListTasksRequest::new();
        Ok(call!(self, tasks, list, "Tasks.List", req)?.tasks)
    }

    /// `Tasks.Get` of a task's init process.
    pub async fn task(&self, id: &str) -> Result<tpb::Process> {
        let req = tpb::GetRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        let r = call!(self, tasks, get, "Tasks.Get", req)?;
        Ok(r.process.into_option().unwrap_or_default())
    }

    /// `Tasks.Create` (stdio: /dev/null in, the shim's log out) then `Tasks.Start`; returns
    /// the pid.
    pub async fn create_and_start_task(&self, id: &str) -> Result<u32> {
        let req = tpb::CreateTaskRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        call!(self, tasks, create, "Tasks.Create", req)?;
        let req = tpb::StartRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        Ok(call!(self, tasks, start, "Tasks.Start", req)?.pid)
    }

    /// `Tasks.Kill` of every process of the task with `signal`.
    pub async fn kill_task(&self, id: &str, signal: u32) -> Result<()> {
        let req = tpb::KillRequest {
            container_id: id.to_owned(),
            signal,
            all: true,
            ..Default::default()
        };
        call!(self, tasks, kill, "Tasks.Kill", req)?;
        Ok(())
    }

    /// `Tasks.Wait` for the init's exit, bounded by `timeout`.
    pub async fn wait_task(&self, id: &str, timeout: Duration) -> Result<tpb::WaitResponse> {
        let c = self.conn().await?;
        let req = tpb::WaitRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        let r = bounded(
            &self.address,
            timeout,
            "Tasks.Wait",
            c.tasks.wait(self.ctx(timeout), &req),
        )
        .await;
        self.check(r)
    }

    /// `Tasks.Delete`.
    pub async fn delete_task(&self, id: &str) -> Result<()> {
        let req = tpb::DeleteTaskRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        call!(self, tasks, delete, "Tasks.Delete", req)?;
        Ok(())
    }

    /// `Images.List`.
    pub async fn images(&self) -> Result<Vec<ipb::Image>> {
        let req = ipb::ListImagesRequest::new();
        Ok(call!(self, images, list, "Images.List", req)?.images)
    }

    /// `Images.Get`.
    pub async fn image(&self, name: &str) -> Result<ipb::Image> {
        let req = ipb::GetImageRequest {
            name: name.to_owned(),
            ..Default::default()
        };
        let r = call!(self, images, get, "Images.Get", req)?;
        Ok(r.image.into_option().unwrap_or_default())
    }

    /// `Images.Create`.
    pub async fn create_image(&self, image: ipb::Image) -> Result<ipb::Image> {
        let req = ipb::CreateImageRequest {
            image: Some(image).into(),
            ..Default::default()
        };
        let r = call!(self, images, create, "Images.Create", req)?;
        Ok(r.image.into_option().unwrap_or_default())
    }

    /// `Images.Delete`; `sync` collects the garbage before returning.
    pub async fn delete_image(&self, name: &str, sync: bool) -> Result<()> {
        let req = ipb::DeleteImageRequest {
            name: name.to_owned(),
            sync,
            ..Default::default()
        };
        call!(self, images, delete, "Images.Delete", req)?;
        Ok(())
    }

    /// `Content.Read` of a whole (small) blob: manifests, indexes, configs.
    pub async fn read_blob(&self, digest: &str, max: usize) -> Result<Vec<u8>> {
        let c = self.conn().await?;
        let req = ctpb::ReadContentRequest {
            digest: digest.to_owned(),
            ..Default::default()
        };
        let mut ctx = self.ctx(self.timeout);
        ctx.timeout_nano = 0;
        let r = bounded(
            &self.address,
            self.timeout,
            "Content.Read",
            c.content.read(ctx, &req),
        )
        .await;
        let mut stream = self.check(r)?;
        let mut out = Vec::new();
        loop {
            let r = bounded(&self.address, self.timeout, "Content.Read", stream.recv()).await;
            match self.check(r)? {
                Some(chunk) => {
                    out.extend_from_slice(&chunk.data);
                    if out.len() > max {
                        return Err(crate::error::Error::Corrupt(format!(
                            "blob {digest} is larger than {max} bytes"
                        )));
                    }
                }
                None => return Ok(out),
            }
        }
    }

    /// `Pull.Pull` of `reference`, waiting for the end; every progress message must come
    /// within the timeout. Returns the result.
    pub async fn pull(
        &self,
        reference: &str,
        snapshotter: &str,
        auth: Option<ppb::PullAuth>,
    ) -> Result<ppb::PullResult> {
        let c = self.conn().await?;
        let req = ppb::PullRequest {
            reference: reference.to_owned(),
            snapshotter: snapshotter.to_owned(),
            auth: auth.into(),
            ..Default::default()
        };
        let mut ctx = self.ctx(self.timeout);
        ctx.timeout_nano = 0;
        let r = bounded(
            &self.address,
            self.timeout,
            "Pull.Pull",
            c.pull.pull(ctx, &req),
        )
        .await;
        let mut stream = self.check(r)?;
        let mut result = None;
        loop {
            let r = bounded(&self.address, self.timeout, "Pull.Pull", stream.recv()).await;
            match self.check(r)? {
                Some(ev) => {
                    if ev.done {
                        result = ev.result.into_option();
                    }
                }
                None => break,
            }
        }
        result.ok_or_else(|| {
            crate::error::Error::Corrupt(format!(
                "berthd ended the pull of {reference:?} without a result"
            ))
        })
    }

    /// `Snapshots.List` of one snapshotter ("" = the default).
    pub async fn snapshots(&self, snapshotter: &str) -> Result<Vec<spb::Info>> {
        let req = spb::ListSnapshotsRequest {
            snapshotter: snapshotter.to_owned(),
            ..Default::default()
        };
        Ok(call!(self, snapshots, list, "Snapshots.List", req)?.info)
    }

    /// `Snapshots.Usage`: (bytes, inodes).
    pub async fn snapshot_usage(&self, snapshotter: &str, key: &str) -> Result<(i64, i64)> {
        let req = spb::UsageRequest {
            snapshotter: snapshotter.to_owned(),
            key: key.to_owned(),
            ..Default::default()
        };
        let r = call!(self, snapshots, usage, "Snapshots.Usage", req)?;
        Ok((r.size, r.inodes))
    }
}
