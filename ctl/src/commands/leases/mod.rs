//! `berthctl leases …`: leases, which protect content and snapshots from garbage collection
//! (Leases service): list, create, remove.

mod create;
mod ls;
mod rm;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;
use crate::output::ListOpts;

/// `berthctl leases` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List leases of the namespace.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Create a lease (prints its id).
    Create(create::CreateArgs),
    /// Remove leases; what they held goes at the next garbage collection.
    #[command(alias = "remove", alias = "delete")]
    Rm(rm::RmArgs),
}

/// Runs one `leases` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => ls::run(g, opts).await,
        Command::Create(a) => create::run(g, a).await,
        Command::Rm(a) => rm::run(g, a).await,
    }
}
