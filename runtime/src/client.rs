//! Client side of berthd's ttrpc API.
use std::time::Duration;

/// Errors talking to berthd.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to berthd at {address}: {source}")]
    Connect { address: String, #[source] source: ttrpc::Error },
    #[error("{method} call to berthd at {address} failed: {source}")]
    Call { address: String, method: &'static str, #[source] source: ttrpc::Error },
    #[error("{method} call to berthd at {address} timed out after {timeout:?}")]
    Timeout { address: String, method: &'static str, timeout: Duration },
    #[error("cannot start an async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Normalises an address: a bare path becomes `unix://<path>`.
pub fn normalize_address(address: &str) -> String {
    if address.contains("://") { address.to_string() } else { format!("unix://{address}") }
}

/// Asks berthd for its version; returns (version, revision).
pub async fn version(address: &str, timeout: Duration) -> Result<(String, String), ClientError> {
    let _ = (address, timeout);
    todo!("filled in by the runtime work")
}

/// Blocking [`version`], for callers without an async runtime (init's readiness check).
pub fn version_blocking(address: &str, timeout: Duration) -> Result<(String, String), ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ClientError::Runtime)?;
    rt.block_on(version(address, timeout))
}
