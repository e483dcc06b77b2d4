//! The global flags — berthd's address, the namespace, berth-init's address, the timeout —
//! read in this one place and handed to every verb as [`Globals`].
//!
//! They are `global`, so they may stand anywhere on the command line (`berthctl -n x images
//! ls` and `berthctl images ls -n x` are the same), and each has one meaning for every verb.

use std::time::Duration;

use berth_api::address::{DEFAULT_ADDRESS, DEFAULT_INIT_ADDRESS};
use berth_api::keys::DEFAULT_NAMESPACE;

/// berthctl's global flags.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// berthd's socket (`unix:///path` or a path); on a QEMU host, the bridged virtio-serial socket.
    #[arg(long, short = 'a', global = true, env = "BERTH_ADDRESS", default_value = DEFAULT_ADDRESS)]
    pub address: String,
    /// Namespace of the storage verbs (like ctr's `-n`).
    #[arg(long, short = 'n', global = true, env = "BERTH_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// berth-init's control API socket, for the `system` verbs.
    #[arg(long, global = true, env = "BERTH_INIT_ADDRESS", default_value = DEFAULT_INIT_ADDRESS)]
    pub init_address: String,
    /// Seconds to wait for berthd's answer.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
}

impl Globals {
    /// How long one call (and connecting) may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}
