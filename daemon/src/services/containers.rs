//! `berth.services.containers.v1.Containers`: container records of the request's namespace,
//! over [`Tasks`]' container operations (a create builds the spec from the image and run
//! options and prepares the rootfs snapshot; create and delete publish their events).

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs;
use berth_api::proto::{containers as cpb, containers_ttrpc};
use berth_api::time::nanos;
use berth_engine::metadata::Container;
use berth_engine::tasks::spec::Bind;
use berth_engine::tasks::{NewContainer, RunOptions, Tasks};
use ttrpc::r#async::TtrpcContext;

use super::{blocking, namespace, spawn_blocking};

/// `berth.services.containers.v1.Containers`.
pub struct ContainersService(pub Arc<Tasks>);

fn container_to_pb(c: &Container) -> cpb::Container {
    cpb::Container {
        id: c.id.clone(),
        labels: c.labels.clone().into_iter().collect(),
        image: c.image.clone(),
        runtime: c.runtime.clone(),
        spec: c.spec.clone(),
        snapshotter: c.snapshotter.clone(),
        snapshot_key: c.snapshot_key.clone(),
        created_at: nanos(c.created_at),
        updated_at: nanos(c.updated_at),
        ..Default::default()
    }
}

fn options(o: cpb::RunOptions) -> RunOptions {
    RunOptions {
        args: o.args,
        env: o.env,
        user: o.user,
        net: o.net,
        mounts: o
            .mounts
            .into_iter()
            .map(|m| Bind {
                source: m.source.into(),
                destination: m.destination,
                options: m.options,
            })
            .collect(),
        // 0 on the wire is "no limit".
        memory_limit: (o.memory_limit > 0).then_some(o.memory_limit),
        cpus: (o.cpus != 0.0).then_some(o.cpus),
        pids_limit: (o.pids_limit > 0).then_some(o.pids_limit),
        hostname: o.hostname,
        cwd: o.cwd,
    }
}

fn new_container(r: cpb::CreateContainerRequest) -> NewContainer {
    let c = r.container.into_option().unwrap_or_default();
    NewContainer {
        id: c.id,
        image: c.image,
        runtime: c.runtime,
        snapshotter: c.snapshotter,
        spec: c.spec,
        labels: c.labels.into_iter().collect(),
        options: options(r.options.into_option().unwrap_or_default()),
    }
}

/// The record an update carries (timestamps and snapshot are the stored ones').
fn record(c: cpb::Container) -> Container {
    Container {
        id: c.id,
        image: c.image,
        snapshotter: String::new(),
        snapshot_key: String::new(),
        runtime: c.runtime,
        spec: c.spec,
        labels: c.labels.into_iter().collect(),
        created_at: std::time::UNIX_EPOCH,
        updated_at: std::time::UNIX_EPOCH,
    }
}

#[async_trait]
impl containers_ttrpc::Containers for ContainersService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        r: cpb::CreateContainerRequest,
    ) -> ttrpc::Result<cpb::CreateContainerResponse> {
        let ns = namespace(ctx)?;
        let t = self.0.clone();
        let c = spawn_blocking("", move || t.create_container(&ns, new_container(r)))
            .await?
            .map_err(|e| errdefs::status(&e))?;
        Ok(cpb::CreateContainerResponse {
            container: Some(container_to_pb(&c)).into(),
            ..Default::default()
        })
    }

    async fn get(
        &self,
        ctx: &TtrpcContext,
        r: cpb::GetContainerRequest,
    ) -> ttrpc::Result<cpb::GetContainerResponse> {
        let ns = namespace(ctx)?;
        let c = self
            .0
            .container(&ns, &r.id)
            .map_err(|e| errdefs::status(&e))?;
        Ok(cpb::GetContainerResponse {
            container: Some(container_to_pb(&c)).into(),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _: cpb::ListContainersRequest,
    ) -> ttrpc::Result<cpb::ListContainersResponse> {
        let ns = namespace(ctx)?;
        let cs = self.0.containers(&ns).map_err(|e| errdefs::status(&e))?;
        Ok(cpb::ListContainersResponse {
            containers: cs.iter().map(container_to_pb).collect(),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        ctx: &TtrpcContext,
        r: cpb::UpdateContainerRequest,
    ) -> ttrpc::Result<cpb::UpdateContainerResponse> {
        let ns = namespace(ctx)?;
        let c = record(r.container.into_option().unwrap_or_default());
        let out = blocking(|| self.0.update_container(&ns, c, &r.update_mask))
            .map_err(|e| errdefs::status(&e))?;
        Ok(cpb::UpdateContainerResponse {
            container: Some(container_to_pb(&out)).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        r: cpb::DeleteContainerRequest,
    ) -> ttrpc::Result<cpb::Empty> {
        let ns = namespace(ctx)?;
        let t = self.0.clone();
        spawn_blocking("", move || t.delete_container(&ns, &r.id))
            .await?
            .map_err(|e| errdefs::status(&e))?;
        Ok(cpb::Empty::default())
    }
}
