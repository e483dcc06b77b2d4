//! `berthctl tasks ps ID`: the pids of a task's processes (Tasks service, `Pids`).

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks ps` arguments.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    id: String,
}

/// Prints the pids under a `PID` header.
pub async fn run(g: &Globals, a: PsArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::ListPidsRequest {
        container_id: a.id,
        ..Default::default()
    };
    let r = berthd
        .tasks()
        .pids(berthd.ctx(), &req)
        .await
        .map_err(Error::call("list pids"))?;
    println!("PID");
    for p in r.pids {
        println!("{p}");
    }
    Ok(())
}
