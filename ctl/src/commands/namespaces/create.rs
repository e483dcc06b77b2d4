//! `berthctl namespaces create NAME [-l k=v]…`: a new namespace (Namespaces service,
//! `Create`); prints its name.

use crate::commands::parse_labels;
use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `namespaces create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    name: String,
    /// `key=value`; repeatable.
    #[arg(long, short = 'l')]
    label: Vec<String>,
}

/// Creates the namespace.
pub async fn run(g: &Globals, a: CreateArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    let n = client
        .create_namespace(&a.name, parse_labels(&a.label)?)
        .await?;
    println!("{}", n.name);
    Ok(())
}
