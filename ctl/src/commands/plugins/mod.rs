//! `berthctl plugins …`: the engine's plugins (Introspection service).

mod ls;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;

/// `berthctl plugins` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List plugins with their status (like `ctr plugins ls`).
    #[command(alias = "list")]
    Ls(ls::LsArgs),
}

/// Runs one `plugins` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(a) => ls::run(g, a).await,
    }
}
