//! `berthctl images rm NAME… [--sync]`: removes image records (Images service, `Delete`);
//! their content goes at the next garbage collection (before returning with `--sync`).

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `images rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    names: Vec<String>,
    /// Collect garbage before returning, so the space is freed when the command ends.
    #[arg(long)]
    sync: bool,
}

/// Removes the images.
pub async fn run(g: &Globals, a: RmArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    for n in a.names {
        client.delete_image(&n, a.sync).await?;
        println!("{n}");
    }
    Ok(())
}
