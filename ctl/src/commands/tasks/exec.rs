//! `berthctl tasks exec ID COMMAND…`: runs an extra process in a running task (Tasks service,
//! `Exec`, then `Wait`) with our stdio attached through FIFOs, and exits with its status.

use std::time::Duration;

use berth_api::proto::tasks as pb;

use crate::commands::process::{gen_id, Fifos};
use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks exec` arguments.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Exec id (default: generated).
    #[arg(long)]
    exec_id: Option<String>,
    #[arg(long, default_value = "")]
    cwd: String,
    #[arg(long, short = 'e')]
    env: Vec<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// Runs the process; returns its exit status.
pub async fn run(g: &Globals, a: ExecArgs) -> Result<i32, Error> {
    let berthd = Berthd::connect(g).await?;
    let exec_id = a.exec_id.unwrap_or_else(gen_id);
    let fifos = Fifos::create(&format!("{}-{exec_id}", a.id))?;
    let copiers = fifos.attach();
    let tasks = berthd.tasks();
    let req = pb::ExecProcessRequest {
        container_id: a.id.clone(),
        exec_id: exec_id.clone(),
        args: a.command,
        env: a.env,
        cwd: a.cwd,
        stdin: fifos.path("stdin"),
        stdout: fifos.path("stdout"),
        stderr: fifos.path("stderr"),
        ..Default::default()
    };
    tasks
        .exec(berthd.ctx_for(Duration::from_secs(60)), &req)
        .await
        .map_err(Error::call("exec"))?;
    let wait = pb::WaitRequest {
        container_id: a.id,
        exec_id,
        ..Default::default()
    };
    let w = tasks
        .wait(berthd.stream_ctx(), &wait)
        .await
        .map_err(Error::call("wait exec"))?;
    copiers.finish().await;
    Ok(w.exit_status as i32)
}
