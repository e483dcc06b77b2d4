//! `berthctl content …`: blobs of the content store as the namespace sees them (Content
//! service): list, read, remove, ingest.

mod get;
mod ls;
mod put;
mod rm;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;
use crate::output::ListOpts;

/// `berthctl content` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List blobs recorded in the namespace.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Write a blob's bytes to stdout (or `-o FILE`).
    Get(get::GetArgs),
    /// Remove the namespace's records of blobs; a blob goes once no namespace records it.
    #[command(alias = "remove", alias = "delete")]
    Rm(rm::RmArgs),
    /// Store a file (or stdin with `-`) as a blob of the namespace; prints its digest.
    #[command(alias = "ingest")]
    Put(put::PutArgs),
}

/// Runs one `content` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => ls::run(g, opts).await,
        Command::Get(a) => get::run(g, a).await,
        Command::Rm(a) => rm::run(g, a).await,
        Command::Put(a) => put::run(g, a).await,
    }
}
