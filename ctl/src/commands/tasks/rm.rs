//! `berthctl tasks rm ID`: deletes a stopped task (Tasks service, `Delete`) and prints the
//! status it exited with.

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    id: String,
}

/// Deletes the task.
pub async fn run(g: &Globals, a: RmArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::DeleteTaskRequest {
        container_id: a.id,
        ..Default::default()
    };
    let r = berthd
        .tasks()
        .delete(berthd.ctx(), &req)
        .await
        .map_err(Error::call("delete task"))?;
    println!("{} exited with status {}", r.container_id, r.exit_status);
    Ok(())
}
