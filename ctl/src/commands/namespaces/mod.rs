//! `berthctl namespaces …` (like `ctr namespaces`): list, create and remove namespaces
//! (Namespaces service).

mod create;
mod ls;
mod rm;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;
use crate::output::ListOpts;

/// `berthctl namespaces` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List namespaces.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Create a namespace.
    Create(create::CreateArgs),
    /// Remove empty namespaces.
    #[command(alias = "remove", alias = "delete")]
    Rm(rm::RmArgs),
}

/// Runs one `namespaces` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => ls::run(g, opts).await,
        Command::Create(a) => create::run(g, a).await,
        Command::Rm(a) => rm::run(g, a).await,
    }
}
