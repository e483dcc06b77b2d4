//! `berthctl system poweroff`: an orderly power-off of the node, like SIGTERM to init (System
//! service, `Poweroff`).

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;

/// Asks init to power off.
pub(super) async fn run(init: &Init) -> Result<(), Error> {
    init.call(
        "Poweroff",
        init.client.poweroff(init.ctx(), &pb::PowerRequest::new()),
    )
    .await?;
    println!("powering off");
    Ok(())
}
