//! `berthctl namespaces ls|create|rm`.

use clap::Subcommand;

use super::{age, labels_text, parse_labels, Error, ListOpts};
use berth_api::client::StorageClient;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List namespaces.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Create a namespace.
    Create {
        name: String,
        /// `key=value`; repeatable.
        #[arg(long, short = 'l')]
        label: Vec<String>,
    },
    /// Remove empty namespaces.
    #[command(alias = "remove", alias = "delete")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub async fn run(client: &StorageClient, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => {
            let list = client.namespaces().await?;
            let json = list
                .iter()
                .map(|n| {
                    serde_json::json!({
                        "name": n.name,
                        "labels": n.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
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
                serde_json::Value::Array(json),
                &["NAME", "CREATED", "LABELS"],
                rows,
            );
        }
        Command::Create { name, label } => {
            let n = client
                .create_namespace(&name, parse_labels(&label)?)
                .await?;
            println!("{}", n.name);
        }
        Command::Rm { names } => {
            for n in names {
                client.delete_namespace(&n).await?;
                println!("{n}");
            }
        }
    }
    Ok(())
}
