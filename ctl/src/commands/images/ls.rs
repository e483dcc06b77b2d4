//! `berthctl images ls`: the namespace's image records (Images service, `List`): REF, TYPE,
//! DIGEST, SIZE, CREATED, LABELS.

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{age, human_size, labels_text, sorted, ListOpts};

/// Lists the images.
pub async fn run(g: &Globals, opts: ListOpts) -> Result<(), Error> {
    let list = connect::storage(g).await?.images().await?;
    let json = list
        .iter()
        .map(|i| {
            let t = i.target.as_ref();
            serde_json::json!({
                "name": i.name,
                "target": {
                    "media_type": t.map(|t| t.media_type.clone()),
                    "digest": t.map(|t| t.digest.clone()),
                    "size": t.map(|t| t.size),
                },
                "labels": sorted(&i.labels),
                "created_at": i.created_at,
                "updated_at": i.updated_at,
            })
        })
        .collect();
    let rows = list
        .iter()
        .map(|i| {
            let t = i.target.clone().unwrap_or_default();
            vec![
                i.name.clone(),
                t.media_type,
                t.digest,
                human_size(t.size),
                age(i.created_at),
                labels_text(&i.labels),
            ]
        })
        .collect();
    opts.print(
        list.iter().map(|i| i.name.clone()).collect(),
        json,
        &["REF", "TYPE", "DIGEST", "SIZE", "CREATED", "LABELS"],
        rows,
    );
    Ok(())
}
