//! `berthctl node …`: the node itself, through berth-init's control API. Today: `node config`,
//! the files on the state disk that make one node differ from its image.

pub mod config;

use clap::Subcommand;

use crate::connect::Init;
use crate::error::Error;
use crate::globals::Globals;

/// `berthctl node` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The node's configuration files under /var/etc/berth: node.toml, berthd.d/<name>.toml,
    /// certs.d/<host>/<file>, remote/<file> (admin role over the remote API).
    #[command(subcommand)]
    Config(config::Command),
}

/// Runs one `node` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    let init = Init::connect(g).await?;
    match command {
        Command::Config(c) => config::run(&init, c).await,
    }
}
