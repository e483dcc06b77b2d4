//! `berthctl leases create [ID] [--expires-in D] [-l k=v]…`: a new lease (Leases service,
//! `Create`); prints its id.

use std::time::SystemTime;

use berth_api::time::nanos;

use crate::commands::{parse_duration, parse_labels};
use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `leases create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// Lease id (default: generated from the time).
    id: Option<String>,
    /// Expire after this long (`90s`, `10m`, `2h`, `1d`); default never.
    #[arg(long)]
    expires_in: Option<String>,
    /// `key=value`; repeatable.
    #[arg(long, short = 'l')]
    label: Vec<String>,
}

/// Creates the lease.
pub async fn run(g: &Globals, a: CreateArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    let expires_at = match a.expires_in {
        Some(d) => nanos(SystemTime::now() + parse_duration(&d)?),
        None => 0,
    };
    let id =
        a.id.unwrap_or_else(|| format!("berthctl-{}", nanos(SystemTime::now())));
    let l = client
        .create_lease(&id, parse_labels(&a.label)?, expires_at)
        .await?;
    println!("{}", l.id);
    Ok(())
}
