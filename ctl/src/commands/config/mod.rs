//! `berthctl config …`: berthd's configuration (Config service).

mod reload;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;

/// `berthctl config` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reload berthd's configuration (like SIGHUP) and print what changed.
    Reload(reload::ReloadArgs),
}

/// Runs one `config` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Reload(a) => reload::run(g, a).await,
    }
}
