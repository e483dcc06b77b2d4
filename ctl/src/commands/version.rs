//! `berthctl version`: this client's version and revision, then berthd's (Version service).
//! The client's part is printed before connecting, so it shows even when berthd is down.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// Prints both versions.
pub async fn run(g: &Globals) -> Result<(), Error> {
    println!("Client:");
    println!("  Version:  {}", berth_api::version::VERSION);
    println!("  Revision: {}", berth_api::version::REVISION);
    let (v, r) = connect::client(g).await?.version().await?;
    println!();
    println!("Server:");
    println!("  Version:  {v}");
    println!("  Revision: {r}");
    Ok(())
}
