//! The gRPC edge: CRI v1 `RuntimeService` and `ImageService` as thin adapters over
//! [`crate::runtime_info`], [`crate::sandbox`] and [`crate::images`]. Each method unpacks the
//! request, calls one core operation and maps its error through `From<Error> for Status`
//! (crate::error), nothing else.
//!
//! Containers, streaming and stats come in phase 2 (docs/kubernetes.md): until then the
//! container calls that must be idempotent succeed on the (always empty) set of containers,
//! lists are empty, and the rest answer UNIMPLEMENTED with the reason.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::images::Images;
use crate::proto::image_service_server::ImageService;
use crate::proto::runtime_service_server::RuntimeService;
use crate::proto::*;
use crate::runtime_info::RuntimeInfo;
use crate::sandbox::Sandboxes;

/// The CRI RuntimeService.
pub struct Runtime {
    pub info: Arc<RuntimeInfo>,
    pub sandboxes: Arc<Sandboxes>,
}

/// The CRI ImageService.
pub struct Image {
    pub images: Arc<Images>,
}

type Reply<T> = Result<Response<T>, Status>;

fn phase2(what: &str) -> Status {
    Error::Unimplemented(format!(
        "{what} is not implemented by berth-cri yet (containers, streaming and stats come in phase 2; see docs/kubernetes.md)"
    ))
    .into()
}

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(&self, _: Request<VersionRequest>) -> Reply<VersionResponse> {
        Ok(Response::new(self.info.version().await))
    }

    async fn status(&self, r: Request<StatusRequest>) -> Reply<StatusResponse> {
        Ok(Response::new(
            self.info.status(r.into_inner().verbose).await,
        ))
    }

    async fn runtime_config(
        &self,
        _: Request<RuntimeConfigRequest>,
    ) -> Reply<RuntimeConfigResponse> {
        Ok(Response::new(self.info.runtime_config()))
    }

    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> Reply<UpdateRuntimeConfigResponse> {
        let cidr = r
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(pod_cidr = %cidr, "UpdateRuntimeConfig: the pod CIDR is the CNI configuration's business; noted");
        Ok(Response::new(UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("RunPodSandbox without a config"))?;
        let id = self.sandboxes.run(config, &r.runtime_handler).await?;
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        self.sandboxes.stop(&r.into_inner().pod_sandbox_id).await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        self.sandboxes
            .remove(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        let r = r.into_inner();
        Ok(Response::new(
            self.sandboxes.status(&r.pod_sandbox_id, r.verbose).await?,
        ))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        let items = self.sandboxes.list(r.into_inner().filter.as_ref()).await?;
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn list_containers(
        &self,
        _: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        Ok(Response::new(ListContainersResponse {
            containers: Vec::new(),
        }))
    }

    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        let id = r.into_inner().container_id;
        Err(Error::NotFound(format!("container {id:?} not found")).into())
    }

    async fn stop_container(
        &self,
        _: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        // No container exists before phase 2: stopping one that does not exist is a no-op.
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        _: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn create_container(
        &self,
        _: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        Err(phase2("CreateContainer"))
    }

    async fn start_container(
        &self,
        _: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        Err(phase2("StartContainer"))
    }

    async fn exec_sync(&self, _: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        Err(phase2("ExecSync"))
    }

    async fn exec(&self, _: Request<ExecRequest>) -> Reply<ExecResponse> {
        Err(phase2("Exec"))
    }

    async fn attach(&self, _: Request<AttachRequest>) -> Reply<AttachResponse> {
        Err(phase2("Attach"))
    }

    async fn port_forward(&self, _: Request<PortForwardRequest>) -> Reply<PortForwardResponse> {
        Err(phase2("PortForward"))
    }

    async fn list_container_stats(
        &self,
        _: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        Ok(Response::new(ListContainerStatsResponse {
            stats: Vec::new(),
        }))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        Ok(Response::new(ListMetricDescriptorsResponse {
            descriptors: Vec::new(),
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        Err(phase2("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        Err(phase2("ListPodSandboxStats"))
    }
}

#[tonic::async_trait]
impl ImageService for Image {
    async fn list_images(&self, r: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        let filter = r.into_inner().filter.and_then(|f| f.image).map(|i| i.image);
        let images = self.images.list(filter.as_deref()).await?;
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn image_status(&self, r: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        let status = self.images.status(&image).await?;
        Ok(Response::new(ImageStatusResponse {
            image: status,
            info: Default::default(),
        }))
    }

    async fn pull_image(&self, r: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let r = r.into_inner();
        let image = r.image.map(|i| i.image).unwrap_or_default();
        let with_auth = r.auth.is_some_and(|a| a != AuthConfig::default());
        let id = self.images.pull(&image, with_auth).await?;
        Ok(Response::new(PullImageResponse { image_ref: id }))
    }

    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> Reply<RemoveImageResponse> {
        let image = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.images.remove(&image).await?;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Reply<ImageFsInfoResponse> {
        Ok(Response::new(self.images.fs_info().await?))
    }
}
