//! Where berth's API sockets are on a node.

/// berthd's ttrpc socket (`[ttrpc] address` in berthd.toml).
pub const DEFAULT_ADDRESS: &str = "/run/berth/berthd.sock";
/// berth-init's control API socket (the `system` verbs).
pub const DEFAULT_INIT_ADDRESS: &str = "/run/berth/init.sock";

/// Normalises an address: a bare path becomes `unix://<path>`.
pub fn normalize_address(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("unix://{address}")
    }
}
