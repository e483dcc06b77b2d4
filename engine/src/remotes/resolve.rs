//! Which endpoints a pull of a reference would use, resolved with berthd's live settings —
//! the core of the Registry service, so `berthctl hosts resolve` shows exactly what the
//! daemon does (its config_path, its mirrors, its credentials), not what a client-side
//! reading of the files would guess.

use std::path::PathBuf;

use berth_api::errdefs::{Classify, Kind};

use super::config::{RegistryConfig, RegistryConfigError};
use super::hosts::{parse_reference, HostsError, ImageName};
use super::RegistryHost;

/// The endpoints of one reference.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The parsed reference.
    pub name: ImageName,
    /// The endpoints in the order a pull tries them, each with whether credentials are
    /// configured for its host.
    pub endpoints: Vec<(RegistryHost, bool)>,
    /// The hosts directories searched.
    pub config_path: Vec<PathBuf>,
    /// Deprecation warnings of the settings.
    pub warnings: Vec<String>,
}

/// Why a reference could not be resolved. The message is the error's own line (its causes
/// are already in it), as `hosts resolve` has always shown it.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The reference does not parse.
    #[error("{0}")]
    Reference(HostsError),
    /// The hosts or credentials configuration cannot be read for this reference.
    #[error("{0}")]
    Config(RegistryConfigError),
}

impl Classify for ResolveError {
    /// A bad reference is the caller's fault; a bad hosts.toml or credentials file is the
    /// node's configuration, a precondition the caller cannot fix by asking differently.
    fn kind(&self) -> Kind {
        match self {
            ResolveError::Reference(_)
            | ResolveError::Config(RegistryConfigError::Hosts(
                HostsError::BadReference { .. } | HostsError::BadRegistry(_),
            )) => Kind::InvalidArgument,
            ResolveError::Config(_) => Kind::FailedPrecondition,
        }
    }
}

/// Resolves `reference` with the settings `cfg`.
pub fn resolve(cfg: &RegistryConfig, reference: &str) -> Result<Resolution, ResolveError> {
    let name = parse_reference(reference).map_err(ResolveError::Reference)?;
    let hosts = cfg
        .endpoints_for(&name.registry)
        .map_err(ResolveError::Config)?;
    let mut endpoints = Vec::with_capacity(hosts.len());
    for h in hosts {
        let creds = cfg.credentials_for(&h.host).map_err(ResolveError::Config)?;
        endpoints.push((h, creds.is_some()));
    }
    Ok(Resolution {
        name,
        endpoints,
        config_path: cfg.config_path.clone(),
        warnings: cfg.warnings(),
    })
}
