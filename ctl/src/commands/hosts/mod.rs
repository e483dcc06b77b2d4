//! `berthctl hosts …`: the registry endpoints berthd would use for a pull, as it resolves them
//! from its certs.d hosts.toml files (Registry service).

mod resolve;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;

/// `berthctl hosts` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The ordered endpoints a pull of REF would use: URL, capabilities, ns, TLS, source file.
    Resolve(resolve::ResolveArgs),
}

/// Runs one `hosts` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Resolve(a) => resolve::run(g, a).await,
    }
}
