//! `berthctl containers rm ID…`: deletes containers (Containers service, `Delete`); berthd
//! refuses one whose task still exists. Stops at the first error.

use berth_api::proto::containers as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `containers rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    ids: Vec<String>,
}

/// Deletes the containers.
pub async fn run(g: &Globals, a: RmArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    for id in a.ids {
        let req = pb::DeleteContainerRequest {
            id,
            ..Default::default()
        };
        berthd
            .containers()
            .delete(berthd.ctx(), &req)
            .await
            .map_err(Error::call("delete container"))?;
    }
    Ok(())
}
