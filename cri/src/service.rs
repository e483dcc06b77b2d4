//! The gRPC edge: CRI v1 `RuntimeService` and `ImageService` as thin adapters over
//! [`crate::runtime_info`], [`crate::sandbox`] and [`crate::images`]. Each method unpacks the
//! request, calls one core operation and maps its error through `From<Error> for Status`
//! (crate::error), nothing else.
//!
//! What berth-cri does not implement answers UNIMPLEMENTED with the reason
//! (docs/kubernetes.md).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::container::Containers;
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
    pub containers: Arc<Containers>,
}

/// The CRI ImageService.
pub struct Image {
    pub images: Arc<Images>,
}

type Reply<T> = Result<Response<T>, Status>;

/// The stream of GetContainerEvents, the generated trait's boxed stream type.
type EventStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<ContainerEventResponse, Status>> + Send + 'static>,
>;

fn unimplemented(what: &str) -> Status {
    Error::Unimplemented(format!(
        "{what} is not implemented by berth-cri (docs/kubernetes.md lists what is not supported)"
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
        self.containers
            .stop_sandbox(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        self.containers
            .remove_sandbox(&r.into_inner().pod_sandbox_id)
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
        r: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        let containers = self.containers.list(r.into_inner().filter.as_ref()).await?;
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        let r = r.into_inner();
        Ok(Response::new(
            self.containers.status(&r.container_id, r.verbose).await?,
        ))
    }

    async fn stop_container(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        let r = r.into_inner();
        self.containers.stop(&r.container_id, r.timeout).await?;
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        self.containers.remove(&r.into_inner().container_id).await?;
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        let r = r.into_inner();
        let config = r
            .config
            .ok_or_else(|| Status::invalid_argument("CreateContainer without a config"))?;
        let id = self.containers.create(&r.pod_sandbox_id, config).await?;
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        self.containers.start(&r.into_inner().container_id).await?;
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn update_container_resources(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        let res = r.linux.unwrap_or_default();
        self.containers
            .update_resources(&r.container_id, &res)
            .await?;
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> Reply<ReopenContainerLogResponse> {
        self.containers
            .reopen_log(&r.into_inner().container_id)
            .await?;
        Ok(Response::new(ReopenContainerLogResponse {}))
    }

    async fn exec_sync(&self, r: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        let r = r.into_inner();
        Ok(Response::new(
            self.containers
                .exec_sync(&r.container_id, r.cmd, r.timeout)
                .await?,
        ))
    }

    async fn exec(&self, _: Request<ExecRequest>) -> Reply<ExecResponse> {
        Err(unimplemented("Exec"))
    }

    async fn attach(&self, _: Request<AttachRequest>) -> Reply<AttachResponse> {
        Err(unimplemented("Attach"))
    }

    async fn port_forward(&self, _: Request<PortForwardRequest>) -> Reply<PortForwardResponse> {
        Err(unimplemented("PortForward"))
    }

    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        let stats = self.containers.stats(&r.into_inner().container_id).await?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        let stats = self
            .containers
            .list_stats(r.into_inner().filter.as_ref())
            .await?;
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> Reply<ListMetricDescriptorsResponse> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<ListPodSandboxMetricsRequest>,
    ) -> Reply<ListPodSandboxMetricsResponse> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        let stats = self
            .containers
            .sandbox_stats(&r.into_inner().pod_sandbox_id)
            .await?;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        let stats = self
            .containers
            .list_sandbox_stats(r.into_inner().filter.as_ref())
            .await?;
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn get_container_events(&self, _: Request<GetEventsRequest>) -> Reply<EventStream> {
        let rx = self.containers.events().await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
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
        let id = self.images.pull(&image, r.auth.as_ref()).await?;
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
