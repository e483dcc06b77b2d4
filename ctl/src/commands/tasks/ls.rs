//! `berthctl tasks ls`: the namespace's tasks (Tasks service, `List`): TASK, PID, STATUS,
//! EXIT (for stopped ones).

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::table;

/// Lists the tasks.
pub async fn run(g: &Globals) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let l = berthd
        .tasks()
        .list(berthd.ctx(), &pb::ListTasksRequest::default())
        .await
        .map_err(Error::call("list tasks"))?;
    let rows: Vec<Vec<String>> = l
        .tasks
        .iter()
        .map(|t| {
            let exit = if t.status == "stopped" {
                t.exit_status.to_string()
            } else {
                String::new()
            };
            vec![
                t.container_id.clone(),
                t.pid.to_string(),
                t.status.clone(),
                exit,
            ]
        })
        .collect();
    print!("{}", table(&["TASK", "PID", "STATUS", "EXIT"], &rows));
    Ok(())
}
