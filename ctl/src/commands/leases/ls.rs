//! `berthctl leases ls`: the namespace's leases with what each holds (Leases service, `List`
//! and `ListResources`): ID, CREATED, EXPIRES, RESOURCES, LABELS.

use std::time::SystemTime;

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{age, labels_text, sorted, ListOpts};

/// Lists the leases.
pub async fn run(g: &Globals, opts: ListOpts) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    let list = client.leases().await?;
    let mut json = Vec::new();
    let mut rows = Vec::new();
    for l in &list {
        let resources = client.lease_resources(&l.id).await?;
        let res: Vec<String> = resources
            .iter()
            .map(|r| format!("{}:{}", r.type_, r.id))
            .collect();
        json.push(serde_json::json!({
            "id": l.id,
            "labels": sorted(&l.labels),
            "created_at": l.created_at,
            "expires_at": (l.expires_at != 0).then_some(l.expires_at),
            "resources": res,
        }));
        rows.push(vec![
            l.id.clone(),
            age(l.created_at),
            expires(l.expires_at),
            resources.len().to_string(),
            labels_text(&l.labels),
        ]);
    }
    opts.print(
        list.iter().map(|l| l.id.clone()).collect(),
        serde_json::Value::Array(json),
        &["ID", "CREATED", "EXPIRES", "RESOURCES", "LABELS"],
        rows,
    );
    Ok(())
}

/// `never`, `in 3599s` or `expired`.
fn expires(expires_at: i64) -> String {
    match berth_api::time::from_nanos(expires_at) {
        None => "never".to_string(),
        Some(t) => match t.duration_since(SystemTime::now()) {
            Ok(d) => format!("in {}s", d.as_secs()),
            Err(_) => "expired".to_string(),
        },
    }
}
