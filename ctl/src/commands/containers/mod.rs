//! `berthctl containers …`: container records — metadata, not processes (Containers
//! service): list, show, delete.

mod info;
mod ls;
mod rm;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;

/// `berthctl containers` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List containers.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Show a container (JSON, spec included).
    Info(info::InfoArgs),
    /// Delete containers (their task must be deleted first).
    #[command(alias = "delete", alias = "remove")]
    Rm(rm::RmArgs),
}

/// Runs one `containers` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(a) => ls::run(g, a).await,
        Command::Info(a) => info::run(g, a).await,
        Command::Rm(a) => rm::run(g, a).await,
    }
}
