//! `berthctl leases rm ID… [--sync]`: removes leases (Leases service, `Delete`); what they
//! held goes at the next garbage collection (before returning with `--sync`).

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `leases rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    ids: Vec<String>,
    /// Collect garbage before returning.
    #[arg(long)]
    sync: bool,
}

/// Removes the leases.
pub async fn run(g: &Globals, a: RmArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    for id in a.ids {
        client.delete_lease(&id, a.sync).await?;
        println!("{id}");
    }
    Ok(())
}
