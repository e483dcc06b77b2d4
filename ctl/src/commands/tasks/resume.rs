//! `berthctl tasks resume ID`: thaws a paused task (Tasks service, `Resume`).

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks resume` arguments.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    id: String,
}

/// Thaws the task.
pub async fn run(g: &Globals, a: ResumeArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::ResumeTaskRequest {
        container_id: a.id,
        ..Default::default()
    };
    berthd
        .tasks()
        .resume(berthd.ctx(), &req)
        .await
        .map_err(Error::call("resume task"))?;
    Ok(())
}
