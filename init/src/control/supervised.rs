//! The supervisor's side of the control API: [`ServiceControl`] over the supervisor's
//! [`crate::supervisor::Control`] handle, so `berthctl system status` lists the services and
//! `berthctl system restart NAME` restarts one (its whole cgroup).

use std::time::Duration;

use super::{RestartError, ServiceControl, ServiceStatus};
use crate::supervisor::{Control, ControlError, ServiceState};

/// How long a restart request waits for the main loop to accept it.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reload may take on the main loop (it writes files, may run a helper and
/// stops or starts the listener).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The state names the control API reports.
pub fn state_name(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Pending => "pending",
        ServiceState::Starting => "starting",
        ServiceState::Running => "running",
        ServiceState::Stopping => "stopping",
        ServiceState::Restarting => "restarting",
        ServiceState::Exited => "exited",
        ServiceState::Failed => "failed",
        ServiceState::Stopped => "stopped",
        ServiceState::Off => "off",
    }
}

impl ServiceControl for Control {
    fn services(&self) -> Vec<ServiceStatus> {
        self.status()
            .into_iter()
            .map(|s| ServiceStatus {
                name: s.name,
                state: state_name(s.state).to_string(),
                pid: s.pid,
                restarts: s.restarts,
            })
            .collect()
    }

    fn reload(&self) -> Result<crate::reload::ReloadReport, String> {
        Control::reload(self, RELOAD_TIMEOUT).map_err(|e| e.to_string())
    }

    fn restart(&self, name: &str) -> Result<(), RestartError> {
        match Control::restart(self, name, ACCEPT_TIMEOUT) {
            Ok(()) => Ok(()),
            Err(ControlError::UnknownService(n)) => Err(RestartError::NotFound(n)),
            Err(other) => Err(RestartError::Refused {
                name: name.to_string(),
                reason: other.to_string(),
            }),
        }
    }
}
