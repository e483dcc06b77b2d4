//! `berthctl content rm DIGEST…`: removes the namespace's records of blobs (Content service,
//! `Delete`); a blob itself goes once no namespace records it. Prints each digest removed.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `content rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    digests: Vec<String>,
}

/// Removes the records.
pub async fn run(g: &Globals, a: RmArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    for d in a.digests {
        client.delete_content(&d).await?;
        println!("{d}");
    }
    Ok(())
}
