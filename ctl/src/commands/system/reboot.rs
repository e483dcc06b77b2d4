//! `berthctl system reboot`: an orderly reboot of the node, like Ctrl-Alt-Del (System
//! service, `Reboot`).

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;

/// Asks init to reboot.
pub(super) async fn run(init: &Init) -> Result<(), Error> {
    reboot(init).await?;
    println!("rebooting");
    Ok(())
}

/// The `Reboot` call (also `system upgrade --reboot`'s).
pub(super) async fn reboot(init: &Init) -> Result<(), Error> {
    init.call(
        "Reboot",
        init.client.reboot(init.ctx(), &pb::PowerRequest::new()),
    )
    .await?;
    Ok(())
}
