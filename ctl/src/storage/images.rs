//! `berthctl images ls|rm`.

use clap::Subcommand;

use super::{age, human_size, labels_text, Error, ListOpts};
use berth_api::client::StorageClient;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List images of the namespace.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Remove images; their content goes at the next garbage collection.
    #[command(alias = "remove", alias = "delete")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
        /// Collect garbage before returning, so the space is freed when the command ends.
        #[arg(long)]
        sync: bool,
    },
    /// Pull an image from a registry (through the configured mirrors) and unpack it.
    Pull(crate::pull::PullArgs),
    /// Import an OCI image-layout or `docker save` archive and unpack it.
    Import(super::transfer::ImportArgs),
    /// Export images to an OCI image-layout archive.
    Export(super::transfer::ExportArgs),
    /// Mount an image's filesystem read-only (a view snapshot).
    Mount(super::transfer::MountArgs),
    /// Unmount what `images mount` mounted and remove its view snapshot.
    Unmount(super::transfer::UnmountArgs),
}

pub async fn run(client: &StorageClient, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => {
            let list = client.images().await?;
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
                        "labels": i.labels.iter().collect::<std::collections::BTreeMap<_, _>>(),
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
                serde_json::Value::Array(json),
                &["REF", "TYPE", "DIGEST", "SIZE", "CREATED", "LABELS"],
                rows,
            );
        }
        Command::Rm { names, sync } => {
            for n in names {
                client.delete_image(&n, sync).await?;
                println!("{n}");
            }
        }
        // Dispatched in `storage::run` before a storage client is made.
        Command::Pull(_)
        | Command::Import(_)
        | Command::Export(_)
        | Command::Mount(_)
        | Command::Unmount(_) => {
            unreachable!("transfer verbs are handled by storage::run")
        }
    }
    Ok(())
}
