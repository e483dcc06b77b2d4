//! `berthctl namespaces rm NAME…`: removes namespaces (Namespaces service, `Delete`); berthd
//! refuses one that still holds anything. Prints each name removed, stops at the first error.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `namespaces rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

/// Removes the namespaces.
pub async fn run(g: &Globals, a: RmArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    for n in a.names {
        client.delete_namespace(&n).await?;
        println!("{n}");
    }
    Ok(())
}
