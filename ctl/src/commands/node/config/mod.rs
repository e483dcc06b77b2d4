//! `berthctl node config ls|get|put|rm` (System service, `NodeConfigList/Get/Put`): files on
//! the node's state disk under `/var/etc/berth`, named relative to it. A put is validated by
//! the node whole — the node file by init's parser, drop-ins and hosts by berthd's, the remote
//! API's certificate and key together — before anything is written, then written atomically,
//! then applied by a reload (`--no-reload` to skip it). Private keys are never read back.

mod get;
mod ls;
mod put;
mod rm;

use clap::Subcommand;

use crate::connect::Init;
use crate::error::Error;

/// `berthctl node config` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the files: PATH, SIZE, MODE, AGE.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Print one file (inline private keys redacted; key files are never read back).
    Get(get::GetArgs),
    /// Write files from this machine: `PATH=LOCAL_FILE …`, validated together, then reload.
    Put(put::PutArgs),
    /// Remove files, then reload.
    #[command(alias = "remove")]
    Rm(rm::RmArgs),
}

/// Runs one `node config` verb.
pub async fn run(init: &Init, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(a) => ls::run(init, a).await,
        Command::Get(a) => get::run(init, a).await,
        Command::Put(a) => put::run(init, a).await,
        Command::Rm(a) => rm::run(init, a).await,
    }
}
