//! Serving CRI on the unix socket: wiring the parts together, the listener (a stale socket
//! file of a previous run is replaced; the socket is root-only like berthd's), and shutdown
//! on SIGTERM/SIGINT. Sandboxes keep running across a restart of berth-cri: their state is
//! in berthd.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::berthd::Berthd;
use crate::cni::{conf, Cni};
use crate::config::Config;
use crate::container::Containers;
use crate::images::Images;
use crate::proto::image_service_server::ImageServiceServer;
use crate::proto::runtime_service_server::RuntimeServiceServer;
use crate::runtime_info::RuntimeInfo;
use crate::sandbox::Sandboxes;
use crate::service;

/// Why berth-cri could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {path}")]
    Listen {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare {what}")]
    Setup {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::info!("shutting down (sandboxes keep running)");
}

/// Serves CRI with `cfg` until SIGTERM or SIGINT.
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    let setup = |what: String| move |source| ServeError::Setup { what, source };
    match conf::ensure_default(&cfg.cni) {
        Ok(Some(p)) => tracing::info!(path = %p.display(), "wrote the default CNI network"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(dir = %cfg.cni.conf_dir.display(), "cannot write the default CNI network: {e}")
        }
    }
    let berthd = Arc::new(Berthd::new(
        &cfg.berthd_address,
        &cfg.namespace,
        cfg.berthd_timeout,
    ));
    let cni = Arc::new(Cni::new(cfg.cni.clone()));
    let sandboxes = Arc::new(
        Sandboxes::new(berthd.clone(), cni.clone(), &cfg)
            .map_err(setup("the pause binary's path".into()))?,
    );
    let images = Arc::new(Images::new(berthd.clone(), &cfg.snapshotter));
    let containers = Arc::new(Containers::new(
        berthd.clone(),
        sandboxes.clone(),
        images.clone(),
        cfg.state_dir.clone(),
    ));
    let info = Arc::new(RuntimeInfo::new(berthd.clone(), cni, cfg.clone()));

    let path = cfg.address.clone();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(setup(format!("{}", dir.display())))?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(setup(format!("the old socket {}", path.display()))(e)),
    }
    let listener = UnixListener::bind(&path).map_err(|source| ServeError::Listen {
        path: path.display().to_string(),
        source,
    })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(setup(format!("permissions of {}", path.display())))?;
    match berthd.version().await {
        Ok((v, _)) => tracing::info!(berthd = %cfg.berthd_address, version = %v, "berthd answers"),
        Err(e) => {
            tracing::warn!(berthd = %cfg.berthd_address, "berthd does not answer yet (RuntimeReady=false until it does): {}", berth_api::errdefs::chain(&e))
        }
    }
    tracing::info!(address = %path.display(), namespace = %cfg.namespace, "serving CRI v1");
    let result = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(service::Runtime {
            info,
            sandboxes,
            containers,
        }))
        .add_service(ImageServiceServer::new(service::Image { images }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(ServeError::Grpc)
}
