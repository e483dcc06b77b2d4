//! `berthctl tasks pause ID`: freezes every process of a task (Tasks service, `Pause`; the
//! cgroup freezer).

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks pause` arguments.
#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    id: String,
}

/// Freezes the task.
pub async fn run(g: &Globals, a: PauseArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::PauseTaskRequest {
        container_id: a.id,
        ..Default::default()
    };
    berthd
        .tasks()
        .pause(berthd.ctx(), &req)
        .await
        .map_err(Error::call("pause task"))?;
    Ok(())
}
