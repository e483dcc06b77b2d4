//! `berthctl content ls|get|rm|put`.

use std::fs::File;
use std::io;

use clap::Subcommand;

use super::{age, human_size, labels_text, parse_labels, Error, ListOpts};
use berth_api::client::StorageClient;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List blobs recorded in the namespace.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Write a blob's bytes to stdout (or `-o FILE`).
    Get {
        digest: String,
        #[arg(long, short = 'o')]
        output: Option<std::path::PathBuf>,
    },
    /// Remove the namespace's records of blobs; a blob goes once no namespace records it.
    #[command(alias = "remove", alias = "delete")]
    Rm {
        #[arg(required = true)]
        digests: Vec<String>,
    },
    /// Store a file (or stdin with `-`) as a blob of the namespace; prints its digest.
    #[command(alias = "ingest")]
    Put {
        file: String,
        /// Ingest ref (default: derived from the file name and time); a dropped upload
        /// resumes under the same ref.
        #[arg(long)]
        r#ref: Option<String>,
        /// `key=value`; repeatable.
        #[arg(long, short = 'l')]
        label: Vec<String>,
    },
}

pub async fn run(client: &StorageClient, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => {
            let list = client.content().await?;
            let json = list
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "digest": i.digest,
                        "size": i.size,
                        "labels": i.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
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
                serde_json::Value::Array(json),
                &["DIGEST", "SIZE", "AGE", "LABELS"],
                rows,
            );
        }
        Command::Get { digest, output } => match output {
            Some(path) => {
                let mut f = File::create(&path).map_err(|source| Error::Io {
                    what: format!("create {}", path.display()),
                    source,
                })?;
                client.read_content(&digest, &mut f).await?;
            }
            None => {
                client
                    .read_content(&digest, &mut io::stdout().lock())
                    .await?;
            }
        },
        Command::Rm { digests } => {
            for d in digests {
                client.delete_content(&d).await?;
                println!("{d}");
            }
        }
        Command::Put { file, r#ref, label } => {
            let labels = parse_labels(&label)?;
            let reference = r#ref.unwrap_or_else(|| {
                format!(
                    "berthctl-{}-{}",
                    file,
                    berth_api::time::nanos(std::time::SystemTime::now())
                )
            });
            let digest = if file == "-" {
                client
                    .write_content(&reference, &mut io::stdin().lock(), labels)
                    .await?
            } else {
                let mut f = File::open(&file).map_err(|source| Error::Io {
                    what: format!("open {file}"),
                    source,
                })?;
                client.write_content(&reference, &mut f, labels).await?
            };
            println!("{digest}");
        }
    }
    Ok(())
}
