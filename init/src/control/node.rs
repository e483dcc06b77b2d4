//! The control API's Reload and node configuration calls: thin adapters over
//! [`crate::reload`] (through the supervisor seam, since the main loop owns the reload) and
//! [`crate::node_config`], mapping their errors to ttrpc codes.

use std::sync::Arc;

use berth_api::proto::system;

use super::Control;
use crate::node_config::{self, NodeConfigError};
use crate::reload::ReloadReport;

fn status_err(code: ttrpc::Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

fn node_err(e: NodeConfigError) -> ttrpc::Error {
    let code = match &e {
        NodeConfigError::Path { .. } | NodeConfigError::Invalid { .. } => {
            ttrpc::Code::INVALID_ARGUMENT
        }
        NodeConfigError::NotFound(_) => ttrpc::Code::NOT_FOUND,
        NodeConfigError::KeyFile(_) => ttrpc::Code::FAILED_PRECONDITION,
        NodeConfigError::Io { .. } => ttrpc::Code::INTERNAL,
    };
    status_err(code, e.to_string())
}

fn report_proto(r: ReloadReport) -> system::ReloadResponse {
    system::ReloadResponse {
        applied: r.applied,
        errors: r.errors,
        ..Default::default()
    }
}

fn env(control: &Control) -> ttrpc::Result<node_config::Env> {
    control.node_config().cloned().ok_or_else(|| {
        status_err(
            ttrpc::Code::FAILED_PRECONDITION,
            "the state disk is not set up yet; try again once the node is up",
        )
    })
}

/// Runs blocking work (files, helpers, waiting for the main loop) off the runtime thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ttrpc::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| status_err(ttrpc::Code::INTERNAL, format!("task failed: {e}")))
}

/// `Reload`.
pub async fn reload(control: &'static Control) -> ttrpc::Result<system::ReloadResponse> {
    let Some(services) = control.services() else {
        return Err(status_err(
            ttrpc::Code::FAILED_PRECONDITION,
            "the services have not started yet; try again once the node is up",
        ));
    };
    let services = Arc::clone(services);
    control
        .console
        .info("configuration reload requested through the control API");
    blocking(move || services.reload())
        .await?
        .map(report_proto)
        .map_err(|e| status_err(ttrpc::Code::UNAVAILABLE, e))
}

/// `NodeConfigList`.
pub async fn list(control: &'static Control) -> ttrpc::Result<system::NodeConfigListResponse> {
    let env = env(control)?;
    let files = blocking(move || node_config::list(&env))
        .await?
        .map_err(node_err)?;
    Ok(system::NodeConfigListResponse {
        files: files
            .into_iter()
            .map(|i| system::NodeFileInfo {
                path: i.path,
                size: i.size,
                mode: i.mode,
                modified_us: i.modified_us,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// `NodeConfigGet`.
pub async fn get(
    control: &'static Control,
    req: system::NodeConfigGetRequest,
) -> ttrpc::Result<system::NodeConfigGetResponse> {
    let env = env(control)?;
    let path = req.path.clone();
    let (content, redacted) = blocking(move || node_config::get(&env, &path))
        .await?
        .map_err(node_err)?;
    Ok(system::NodeConfigGetResponse {
        file: protobuf::MessageField::some(system::NodeFile {
            path: req.path,
            content,
            ..Default::default()
        }),
        redacted,
        ..Default::default()
    })
}

/// `NodeConfigPut`: validate, write, then reload when asked. One console line names the
/// files (never their content).
pub async fn put(
    control: &'static Control,
    req: system::NodeConfigPutRequest,
) -> ttrpc::Result<system::NodeConfigPutResponse> {
    let env = env(control)?;
    let files: Vec<(String, Vec<u8>)> =
        req.files.into_iter().map(|f| (f.path, f.content)).collect();
    let remove = req.remove;
    let (written, removed) = blocking(move || node_config::put(&env, files, remove))
        .await?
        .map_err(node_err)?;
    control.console.notice(&format!(
        "node configuration through the control API: written [{}], removed [{}]",
        written.join(", "),
        removed.join(", ")
    ));
    let reload = if req.reload {
        Some(reload(control).await?)
    } else {
        None
    };
    Ok(system::NodeConfigPutResponse {
        written,
        removed,
        reload: protobuf::MessageField::from_option(reload),
        ..Default::default()
    })
}
