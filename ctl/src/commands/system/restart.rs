//! `berthctl system restart SERVICE`: restarts one service init supervises (System service,
//! `RestartService`); only that service's cgroup is killed.

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;

/// `system restart` arguments.
#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// The service name (berthd or a [[service]] name).
    service: String,
}

/// Asks init to restart the service.
pub(super) async fn run(init: &Init, a: RestartArgs) -> Result<(), Error> {
    let req = pb::RestartServiceRequest {
        name: a.service.clone(),
        ..Default::default()
    };
    init.call(
        "RestartService",
        init.client.restart_service(init.ctx(), &req),
    )
    .await?;
    println!("restarting {}", a.service);
    Ok(())
}
