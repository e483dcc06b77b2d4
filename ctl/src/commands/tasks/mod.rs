//! `berthctl tasks …`: tasks, the running side of containers (Tasks service): list, signal,
//! exec, attach, processes, freeze and thaw, cgroup statistics, output, delete.

mod attach;
mod exec;
mod kill;
mod logs;
mod ls;
mod metrics;
mod pause;
mod ps;
mod resume;
mod rm;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;

/// `berthctl tasks` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List tasks.
    #[command(alias = "list")]
    Ls,
    /// Signal a task (default SIGTERM).
    Kill(kill::KillArgs),
    /// Run an extra process in a running task; exits with its status.
    Exec(exec::ExecArgs),
    /// Attach to a running task's output (and stdin with -i, terminal with -t); Ctrl-P
    /// Ctrl-Q or Ctrl-C detaches.
    Attach(attach::AttachArgs),
    /// Pids of a task's processes.
    Ps(ps::PsArgs),
    /// Freeze every process of a task.
    Pause(pause::PauseArgs),
    /// Thaw a paused task.
    Resume(resume::ResumeArgs),
    /// cgroup statistics of a task: memory, CPU, pids, io.
    Metrics(metrics::MetricsArgs),
    /// A task's output (stdout and stderr interleaved), from its log files.
    Logs(logs::LogsArgs),
    /// Delete a stopped task.
    #[command(alias = "delete")]
    Rm(rm::RmArgs),
}

/// Runs one `tasks` verb; returns the exit code (`exec`, `attach`: the process's status).
pub async fn run(g: &Globals, command: Command) -> Result<i32, Error> {
    let done = |r: Result<(), Error>| r.map(|()| 0);
    match command {
        Command::Ls => done(ls::run(g).await),
        Command::Kill(a) => done(kill::run(g, a).await),
        Command::Exec(a) => exec::run(g, a).await,
        Command::Attach(a) => attach::run(g, a).await,
        Command::Ps(a) => done(ps::run(g, a).await),
        Command::Pause(a) => done(pause::run(g, a).await),
        Command::Resume(a) => done(resume::run(g, a).await),
        Command::Metrics(a) => done(metrics::run(g, a).await),
        Command::Logs(a) => done(logs::run(g, a).await),
        Command::Rm(a) => done(rm::run(g, a).await),
    }
}
