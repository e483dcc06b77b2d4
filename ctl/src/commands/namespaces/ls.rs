//! `berthctl namespaces ls`: every namespace (Namespaces service, `List`): NAME, CREATED,
//! LABELS.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{age, labels_text, sorted, ListOpts};

/// Lists the namespaces.
pub async fn run(g: &Globals, opts: ListOpts) -> Result<(), Error> {
    let list = connect::storage(g).await?.namespaces().await?;
    let json = list
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "labels": sorted(&n.labels),
                "created_at": n.created_at,
                "updated_at": n.updated_at,
            })
        })
        .collect();
    let rows = list
        .iter()
        .map(|n| vec![n.name.clone(), age(n.created_at), labels_text(&n.labels)])
        .collect();
    opts.print(
        list.iter().map(|n| n.name.clone()).collect(),
        json,
        &["NAME", "CREATED", "LABELS"],
        rows,
    );
    Ok(())
}
