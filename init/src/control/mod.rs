//! init's control API: ttrpc on `/run/berth/init.sock` (mode 0600), bridged to the host as the
//! virtio-serial port `org.berth.init`. Service `berth.services.system.v1.System`
//! (`api/proto/berth/services/system/v1/system.proto`): boot stages and services
//! (Status), the log (Log, FollowLog), Reboot, Poweroff, RestartService, A/B upgrades, Reload
//! and node configuration (NodeConfigList/Get/Put, [`node`]).
//!
//! The server runs on one thread with a current-thread tokio runtime (ttrpc's server is
//! async); everything it reads is shared with init through [`Control`]: the [`Timeline`],
//! the log, and the supervisor's [`ServiceControl`] once stage 2 plugs it in. Reboot and
//! Poweroff signal init the way Ctrl-Alt-Del (SIGINT) and SIGTERM do, so the main loop
//! performs the same orderly shutdown as for those signals.
//!
//! See `docs/control-api.md`.

pub mod node;
pub mod server;
pub mod supervised;
pub mod timeline;

use std::sync::{Arc, OnceLock};

pub use timeline::{StageId, StageTime, Timeline};

use crate::console::Console;
use crate::log::Logger;

/// Where the API listens.
pub const SOCKET: &str = "/run/berth/init.sock";
/// The virtio-serial port bridged to [`SOCKET`].
pub const BRIDGE_PORT: &str = berth_layout::ports::INIT;

/// One supervised service as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Its name (`berthd`, a `[[service]]` name).
    pub name: String,
    /// `starting`, `running`, `ready`, `backoff`, `stopped` or `failed`.
    pub state: String,
    /// The running process, if any.
    pub pid: Option<i32>,
    /// Restarts since boot.
    pub restarts: u32,
}

/// Why a restart was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    /// No service by that name.
    #[error("no service named {0:?}")]
    NotFound(String),
    /// The supervisor refused (shutting down, …).
    #[error("cannot restart {name}: {reason}")]
    Refused {
        /// The service.
        name: String,
        /// Why.
        reason: String,
    },
}

/// The seam to the supervisor: what the control API needs from it. The supervisor side
/// implements it (it owns the services on the main loop, so an implementation typically sends
/// a request over the main loop's event channel and waits for the answer, or reads a snapshot
/// the main loop publishes) and stage 2 hands it over with [`Control::set_services`]. Until
/// then Status reports `services_known: false` and RestartService answers UNIMPLEMENTED.
pub trait ServiceControl: Send + Sync {
    /// Every configured service, in start order.
    fn services(&self) -> Vec<ServiceStatus>;
    /// Stops the service (SIGTERM, then SIGKILL after the shutdown timeout) and starts it
    /// again at once, without counting a failure.
    fn restart(&self, name: &str) -> Result<(), RestartError>;
    /// Reads init's configuration again and applies what can change now
    /// ([`crate::reload`]); the error says why the main loop could not.
    fn reload(&self) -> Result<crate::reload::ReloadReport, String>;
}

/// What the control API serves from; lives for the whole life of PID 1.
pub struct Control {
    /// Boot stages.
    pub timeline: Timeline,
    /// The log.
    pub logger: &'static Logger,
    /// Where to report.
    pub console: Console,
    services: OnceLock<Arc<dyn ServiceControl>>,
    slots: OnceLock<Arc<crate::slots::Slots>>,
    node_config: OnceLock<crate::node_config::Env>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("timeline", &self.timeline)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Shared state for the API.
    pub fn new(timeline: Timeline, logger: &'static Logger, console: Console) -> Self {
        Self {
            timeline,
            logger,
            console,
            services: OnceLock::new(),
            slots: OnceLock::new(),
            node_config: OnceLock::new(),
        }
    }

    /// Plugs in the A/B slot state (this boot, the slots, upgrades), once.
    pub fn set_slots(&self, slots: Arc<crate::slots::Slots>) {
        let _ = self.slots.set(slots);
    }

    /// The A/B slot state, once the boot stage ran.
    pub fn slots(&self) -> Option<&Arc<crate::slots::Slots>> {
        self.slots.get()
    }

    /// Plugs in where node configuration lives and what validates it (once, after storage).
    pub fn set_node_config(&self, env: crate::node_config::Env) {
        let _ = self.node_config.set(env);
    }

    /// Node configuration, once the storage stage ran.
    pub fn node_config(&self) -> Option<&crate::node_config::Env> {
        self.node_config.get()
    }

    /// Plugs in the supervisor's side (once).
    pub fn set_services(&self, services: Arc<dyn ServiceControl>) {
        let _ = self.services.set(services);
    }

    /// The supervisor's side, when plugged in.
    pub fn services(&self) -> Option<&Arc<dyn ServiceControl>> {
        self.services.get()
    }
}

/// Starts the API server thread on [`SOCKET`].
pub fn spawn(control: &'static Control) {
    let console = control.console;
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            if let Err(err) = server::serve(
                control,
                std::path::Path::new(SOCKET),
                std::future::pending(),
            ) {
                console.error(&format!("control API: {err}"));
            }
        });
    if let Err(err) = spawned {
        console.error(&format!("control API: cannot start its thread: {err}"));
    }
}
