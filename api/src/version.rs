//! The version every berth binary reports.

/// Release version, from the workspace.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Source revision, from `BERTH_REVISION` at build time (scripts/build-static.sh sets it).
pub const REVISION: &str = match option_env!("BERTH_REVISION") {
    Some(r) => r,
    None => "unknown",
};
