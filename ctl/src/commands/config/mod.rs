//! `berthctl config …`: berthd's configuration (Config service), and berthctl's own contexts
//! file (which nodes and credentials `--context` names; no connection).

mod contexts;
mod reload;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;

/// `berthctl config` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reload berthd's configuration (like SIGHUP) and print what changed.
    Reload(reload::ReloadArgs),
    /// List the contexts of the contexts file ($BERTHCONFIG, else ~/.config/berth/config.toml).
    Contexts(contexts::ContextsArgs),
    /// Make a context the current one (used when no --remote, --context or --address is given).
    UseContext(contexts::UseArgs),
    /// Add a context: its nodes (--node) and the credentials of --ca, --cert and --key.
    AddContext(contexts::AddArgs),
}

/// Runs one `config` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Reload(a) => reload::run(g, a).await,
        Command::Contexts(a) => contexts::list(a),
        Command::UseContext(a) => contexts::use_context(a),
        Command::AddContext(a) => contexts::add(g, a),
    }
}
