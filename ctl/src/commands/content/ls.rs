//! `berthctl content ls`: the blobs the namespace records (Content service, `List`): DIGEST,
//! SIZE, AGE, LABELS.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{age, human_size, labels_text, sorted, ListOpts};

/// Lists the blobs.
pub async fn run(g: &Globals, opts: ListOpts) -> Result<(), Error> {
    let list = connect::storage(g).await?.content().await?;
    let json = list
        .iter()
        .map(|i| {
            serde_json::json!({
                "digest": i.digest,
                "size": i.size,
                "labels": sorted(&i.labels),
                "created_at": i.created_at,
                "updated_at": i.updated_at,
            })
        })
        .collect();
    let rows = list
        .iter()
        .map(|i| {
            vec![
                i.digest.clone(),
                human_size(i.size),
                age(i.created_at),
                labels_text(&i.labels),
            ]
        })
        .collect();
    opts.print(
        list.iter().map(|i| i.digest.clone()).collect(),
        json,
        &["DIGEST", "SIZE", "AGE", "LABELS"],
        rows,
    );
    Ok(())
}
