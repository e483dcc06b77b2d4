//! berthd: the engine's ttrpc server. [`serve`] loads the configuration, opens the engine core
//! (`berth-engine`), registers the [`services`] and serves them on the API socket until
//! SIGTERM; [`reload`] applies configuration changes while it runs. [`shim`] is the other
//! ttrpc server over the engine core: a container's shim process (applet `berth-shim`).
//!
//! The crate boundary is the architecture: the core never depends on this crate, so no core
//! module can reach a service, and every ttrpc server adapter of berth lives here.

pub mod check;
pub mod reload;
pub mod serve;
pub mod services;
pub mod shim;

pub use serve::{main_with_args, EXIT_CONFIG};
