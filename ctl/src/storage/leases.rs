//! `berthctl leases ls|create|rm`.

use std::time::SystemTime;

use clap::Subcommand;

use super::{age, labels_text, parse_duration, parse_labels, Error, ListOpts};
use {berth_api::client::StorageClient, berth_api::time::nanos};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List leases of the namespace.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Create a lease (prints its id).
    Create {
        /// Lease id (default: generated from the time).
        id: Option<String>,
        /// Expire after this long (`90s`, `10m`, `2h`, `1d`); default never.
        #[arg(long)]
        expires_in: Option<String>,
        /// `key=value`; repeatable.
        #[arg(long, short = 'l')]
        label: Vec<String>,
    },
    /// Remove leases; what they held goes at the next garbage collection.
    #[command(alias = "remove", alias = "delete")]
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Collect garbage before returning.
        #[arg(long)]
        sync: bool,
    },
}

pub async fn run(client: &StorageClient, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => {
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
                    "labels": l.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
                    "created_at": l.created_at,
                    "expires_at": (l.expires_at != 0).then_some(l.expires_at),
                    "resources": res,
                }));
                let expires = match berth_api::time::from_nanos(l.expires_at) {
                    None => "never".to_string(),
                    Some(t) => match t.duration_since(SystemTime::now()) {
                        Ok(d) => format!("in {}s", d.as_secs()),
                        Err(_) => "expired".to_string(),
                    },
                };
                rows.push(vec![
                    l.id.clone(),
                    age(l.created_at),
                    expires,
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
        }
        Command::Create {
            id,
            expires_in,
            label,
        } => {
            let expires_at = match expires_in {
                Some(d) => nanos(SystemTime::now() + parse_duration(&d)?),
                None => 0,
            };
            let id = id.unwrap_or_else(|| format!("berthctl-{}", nanos(SystemTime::now())));
            let l = client
                .create_lease(&id, parse_labels(&label)?, expires_at)
                .await?;
            println!("{}", l.id);
        }
        Command::Rm { ids, sync } => {
            for id in ids {
                client.delete_lease(&id, sync).await?;
                println!("{id}");
            }
        }
    }
    Ok(())
}
