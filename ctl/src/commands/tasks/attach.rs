//! `berthctl tasks attach ID`: attaches to a running task's output (or an exec's, with
//! `--exec-id`) over the API connection (Tasks service, `Attach`) — what it writes from now
//! on, its stdout and stderr apart —, to its stdin with `-i` (the process must have been
//! started with `-i`) and to its terminal with `-t` (started with `-t`; ours goes raw).
//! Detaching leaves the process running: Ctrl-P Ctrl-Q on a terminal, or SIGINT, SIGTERM,
//! SIGHUP (which are not forwarded). Exits with the process's status if it exits while
//! attached, 0 after a detach.

use berth_api::client::stdio::{attach, AttachOptions};

use crate::commands::process::{
    check_tty, pump, stdin_is_tty, window_size, Ended, OnSignal, Target,
};
use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks attach` arguments.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// An exec'd process of the task instead of its init.
    #[arg(long)]
    exec_id: Option<String>,
    /// Attach our stdin to the process's (it must have been started with -i).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Drive the process's terminal (it must have been started with -t; ours goes raw).
    #[arg(long, short = 't')]
    tty: bool,
    id: String,
}

/// Attaches until the process exits or we detach; returns its status (0 when detached).
pub async fn run(g: &Globals, a: AttachArgs) -> Result<i32, Error> {
    check_tty(a.interactive, a.tty)?;
    let berthd = Berthd::connect(g).await?;
    let exec_id = a.exec_id.unwrap_or_default();
    let opts = AttachOptions::new(&a.id)
        .exec(&exec_id)
        .stdin(a.interactive)
        .tty(a.tty, window_size());
    let session = attach(&berthd.tasks(), berthd.stream_ctx(), opts)
        .await
        .map_err(Error::call("attach"))?;
    let t = Target {
        berthd: &berthd,
        container_id: &a.id,
        exec_id: &exec_id,
    };
    let raw = a.tty && a.interactive && stdin_is_tty();
    Ok(
        match pump(t, session, a.interactive, raw, OnSignal::Detach).await? {
            Ended::Exit(status) => status as i32,
            Ended::Detached => 0,
        },
    )
}
