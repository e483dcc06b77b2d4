//! `berthctl tasks exec ID COMMAND…`: runs an extra process in a running task (Tasks service,
//! `Exec` — created, not started —, `Attach`, then `Start` with the exec id, so nothing it
//! writes is missed) with our stdio attached over the API connection, and exits with its
//! status. `-i` attaches our stdin (else its stdin is /dev/null), `-t` gives it a terminal
//! (ours raw with `-it`; Ctrl-P Ctrl-Q detaches). SIGINT, SIGTERM and SIGHUP are forwarded
//! to it.

use std::time::Duration;

use berth_api::client::stdio::{attach, AttachOptions};
use berth_api::proto::tasks as pb;

use crate::commands::process::{
    check_tty, gen_id, pump, stdin_is_tty, window_size, Ended, OnSignal, Target,
};
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
    /// Keep the process's stdin open and attach ours to it (else it reads /dev/null).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Give the process a terminal (with -i: ours goes raw; Ctrl-P Ctrl-Q detaches).
    #[arg(long, short = 't')]
    tty: bool,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// Runs the process; returns its exit status (0 when detached).
pub async fn run(g: &Globals, a: ExecArgs) -> Result<i32, Error> {
    check_tty(a.interactive, a.tty)?;
    let berthd = Berthd::connect(g).await?;
    let exec_id = a.exec_id.unwrap_or_else(gen_id);
    let tasks = berthd.tasks();
    let req = pb::ExecProcessRequest {
        container_id: a.id.clone(),
        exec_id: exec_id.clone(),
        args: a.command,
        env: a.env,
        cwd: a.cwd,
        stdin: a.interactive,
        terminal: a.tty,
        ..Default::default()
    };
    tasks
        .exec(berthd.ctx_for(Duration::from_secs(60)), &req)
        .await
        .map_err(Error::call("exec"))?;
    let opts = AttachOptions::new(&a.id)
        .exec(&exec_id)
        .stdin(a.interactive)
        .tty(a.tty, window_size());
    let session = attach(&tasks, berthd.stream_ctx(), opts)
        .await
        .map_err(Error::call("attach"))?;
    let start = pb::StartRequest {
        container_id: a.id.clone(),
        exec_id: exec_id.clone(),
        ..Default::default()
    };
    tasks
        .start(berthd.ctx_for(Duration::from_secs(60)), &start)
        .await
        .map_err(Error::call("exec"))?;
    let t = Target {
        berthd: &berthd,
        container_id: &a.id,
        exec_id: &exec_id,
    };
    let raw = a.tty && a.interactive && stdin_is_tty();
    Ok(
        match pump(t, session, a.interactive, raw, OnSignal::Forward).await? {
            Ended::Exit(status) => status as i32,
            Ended::Detached => 0,
        },
    )
}
