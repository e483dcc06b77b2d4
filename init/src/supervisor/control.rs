//! How other threads see and act on the services: the [`Control`] handle (status, restart
//! on request), the states it reports, and the [`Event`]s helper threads send to the main
//! loop that owns the [`Supervisor`](super::Supervisor).

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::process::ReadyError;
use crate::events;
use crate::reaper::ExitStatus;

/// Messages from the supervisor's helper threads (and [`Control`] handles) to the main loop.
#[derive(Debug)]
pub enum Event {
    /// A readiness check finished (`Ok(version)` or why not).
    Ready {
        /// Service index.
        service: usize,
        /// The run it is about.
        pid: i32,
        /// berthd's version, or the error.
        result: Result<String, ReadyError>,
    },
    /// One of a run's output pipes reached end of stream.
    OutputClosed {
        /// Service index.
        service: usize,
        /// The run it is about.
        pid: i32,
    },
    /// [`Control::restart`]: restart the service called `name`; the outcome goes to `reply`.
    Restart {
        /// Service name.
        name: String,
        /// Where the answer goes.
        reply: mpsc::Sender<Result<(), ControlError>>,
    },
    /// [`Control::reload`]: read the configuration again ([`crate::reload`]). The main loop
    /// handles it, not the supervisor.
    Reload {
        /// Where the report goes.
        reply: mpsc::Sender<crate::reload::ReloadReport>,
    },
}

/// Why a [`Control`] request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No service has this name.
    #[error("no service called {0:?}")]
    UnknownService(String),
    /// The services have not been started yet (the engine stage is not reached).
    #[error("service {0:?} has not been started yet")]
    NotStarted(String),
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The service is off by the configuration; a reload that enables it starts it.
    #[error("service {0:?} is off by the configuration")]
    Off(String),
    /// The main loop did not answer in time (it is busy, or gone).
    #[error("init's main loop did not answer within {0:?}")]
    NoAnswer(Duration),
}

/// A service's state as [`Control::status`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceState {
    /// Waiting for the engine stage ([`Supervisor::start`](super::Supervisor::start)).
    Pending,
    /// Running, not ready yet (berthd before it answers Version).
    Starting,
    /// Running and ready.
    Running,
    /// Asked to stop (SIGTERM sent), not gone yet.
    Stopping,
    /// Exited; restarting after a back-off delay (or draining its output first).
    Restarting,
    /// Exited and not restarted, by its restart policy.
    Exited,
    /// Gave up after repeated failures or an invalid configuration.
    Failed,
    /// Stopped for shutdown.
    Stopped,
    /// Off by the configuration (the remote API without credentials, turned off by a reload).
    Off,
}

/// One service's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// The service name.
    pub name: String,
    /// Its state.
    pub state: ServiceState,
    /// The running process, if any.
    pub pid: Option<i32>,
    /// How many times it was started again after the first start.
    pub restarts: u32,
    /// How its last run ended.
    pub last_exit: Option<ExitStatus>,
    /// Uptime (`CLOCK_BOOTTIME`) when it entered `state`.
    pub since: Duration,
    /// Its cgroup, when it runs in one.
    pub cgroup: Option<PathBuf>,
}

/// A handle other threads use to see and restart services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Control {
    pub(super) status: Arc<Mutex<Vec<ServiceStatus>>>,
    pub(super) events: events::Sender<Event>,
}

impl Control {
    /// The status of every service, in configuration order (berthd first), as of the main
    /// loop's last change.
    pub fn status(&self) -> Vec<ServiceStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Restarts service `name`: SIGTERM to its cgroup, SIGKILL to the cgroup after its stop
    /// timeout, then a new start (not counted as a failure). A failed or exited service is
    /// started again. Returns once the main loop accepted the request (not when the new run
    /// is up: watch [`Control::status`]).
    pub fn restart(&self, name: &str, timeout: Duration) -> Result<(), ControlError> {
        let (tx, rx) = mpsc::channel();
        self.events.send(Event::Restart {
            name: name.to_string(),
            reply: tx,
        });
        rx.recv_timeout(timeout)
            .unwrap_or(Err(ControlError::NoAnswer(timeout)))
    }

    /// Asks the main loop to reload the configuration; returns its report.
    pub fn reload(&self, timeout: Duration) -> Result<crate::reload::ReloadReport, ControlError> {
        let (tx, rx) = mpsc::channel();
        self.events.send(Event::Reload { reply: tx });
        rx.recv_timeout(timeout)
            .map_err(|_| ControlError::NoAnswer(timeout))
    }
}
