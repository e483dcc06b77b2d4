//! `berthctl images import|export|mount|unmount` (Transfer service).

use std::path::PathBuf;

use clap::Args;

use super::{Error, Format};
use crate::transfer_client::{Transfer, TransferError};

/// `images import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// OCI image-layout tar or `docker save` tar; `-` reads standard input.
    pub file: String,
    /// Snapshotter to unpack into (default: berthd's default).
    #[arg(long, default_value = "")]
    pub snapshotter: String,
    /// Platform to import and unpack (`os/arch[/variant]`, default linux/amd64).
    #[arg(long, default_value = "")]
    pub platform: String,
    /// Store content and image records only.
    #[arg(long)]
    pub no_unpack: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only image names.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// `images export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output file (`-` for standard output).
    #[arg(long, short = 'o')]
    pub output: String,
    /// Images to export.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `images mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The image.
    pub name: String,
    /// Where to mount its filesystem (read-only view).
    pub target: PathBuf,
    /// Snapshotter (default: berthd's default).
    #[arg(long, default_value = "")]
    pub snapshotter: String,
}

/// `images unmount`.
#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point given to `images mount`.
    pub target: PathBuf,
}

fn err(e: TransferError) -> Error {
    Error::Usage(e.to_string())
}

/// The view key of a mount point: one per target, so unmount can find it again.
pub fn view_key(target: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let text = abs.display().to_string();
    let hex: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        text.as_bytes(),
    ))
    .iter()
    .take(8)
    .map(|b| format!("{b:02x}"))
    .collect();
    format!("mount-{hex}")
}

pub async fn import(address: &str, namespace: &str, a: ImportArgs) -> Result<(), Error> {
    let t = Transfer::connect(address, namespace).await.map_err(err)?;
    let resp = if a.file == "-" {
        t.import(
            std::io::stdin().lock(),
            &a.snapshotter,
            &a.platform,
            a.no_unpack,
        )
        .await
    } else {
        let f = std::fs::File::open(&a.file).map_err(|source| Error::Io {
            what: a.file.clone(),
            source,
        })?;
        t.import(
            std::io::BufReader::new(f),
            &a.snapshotter,
            &a.platform,
            a.no_unpack,
        )
        .await
    }
    .map_err(err)?;
    if a.quiet {
        for i in &resp.images {
            println!("{}", i.name);
        }
    } else if a.format == Format::Json {
        let images: Vec<_> = resp
            .images
            .iter()
            .map(|i| {
                serde_json::json!({"name": i.name, "media_type": i.media_type, "digest": i.digest, "size": i.size,
                "chain_id": i.chain_id, "layers_applied": i.layers_applied, "layers_reused": i.layers_reused})
            })
            .collect();
        let v = serde_json::json!({"images": images, "bytes": resp.bytes, "millis": resp.millis});
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("json of plain values")
        );
    } else {
        for i in &resp.images {
            let unpacked = if i.chain_id.is_empty() {
                "not unpacked".to_string()
            } else {
                format!(
                    "unpacked: {} layers applied, {} reused",
                    i.layers_applied, i.layers_reused
                )
            };
            println!("{} {} ({unpacked})", i.name, i.digest);
        }
        println!(
            "imported {} image(s), {} bytes in {} ms",
            resp.images.len(),
            resp.bytes,
            resp.millis
        );
    }
    Ok(())
}

pub async fn export(address: &str, namespace: &str, a: ExportArgs) -> Result<(), Error> {
    let t = Transfer::connect(address, namespace).await.map_err(err)?;
    if a.output == "-" {
        t.export(&a.names, std::io::stdout().lock())
            .await
            .map_err(err)?;
    } else {
        // Written next to the target and renamed, so a failed export leaves no partial file.
        let tmp = format!("{}.partial", a.output);
        let f = std::fs::File::create(&tmp).map_err(|source| Error::Io {
            what: tmp.clone(),
            source,
        })?;
        let result = t.export(&a.names, std::io::BufWriter::new(f)).await;
        match result {
            Ok(n) => {
                std::fs::rename(&tmp, &a.output).map_err(|source| Error::Io {
                    what: a.output.clone(),
                    source,
                })?;
                eprintln!(
                    "exported {} image(s) to {} ({n} bytes)",
                    a.names.len(),
                    a.output
                );
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(err(e));
            }
        }
    }
    Ok(())
}

pub async fn mount(address: &str, namespace: &str, a: MountArgs) -> Result<(), Error> {
    let t = Transfer::connect(address, namespace).await.map_err(err)?;
    let key = view_key(&a.target);
    let chain = t
        .mount(&a.name, &a.snapshotter, &key, &a.target)
        .await
        .map_err(err)?;
    println!(
        "{} mounted on {} (snapshot {key}, chain {chain})",
        a.name,
        a.target.display()
    );
    Ok(())
}

pub async fn unmount(
    address: &str,
    timeout: std::time::Duration,
    namespace: &str,
    a: UnmountArgs,
) -> Result<(), Error> {
    let key = view_key(&a.target);
    nix::mount::umount2(&a.target, nix::mount::MntFlags::empty())
        .map_err(|e| Error::Usage(format!("cannot unmount {}: {e}", a.target.display())))?;
    // Remove the view snapshot through the Snapshots service (namespaced key).
    let address = berth_api::client::normalize_address(address);
    let inner = ttrpc::r#async::Client::connect(&address)
        .await
        .map_err(|e| Error::Usage(format!("cannot connect to berthd at {address}: {e}")))?;
    let client = berth_api::proto::snapshots_ttrpc::SnapshotsClient::new(inner);
    let mut ctx = ttrpc::context::with_timeout(timeout.as_nanos().min(i64::MAX as u128) as i64);
    ctx.add(
        berth_api::keys::NAMESPACE_KEYS[0].into(),
        namespace.to_string(),
    );
    let req = berth_api::proto::snapshots::RemoveSnapshotRequest {
        key: key.clone(),
        ..Default::default()
    };
    match client.remove(ctx, &req).await {
        Ok(_) => {}
        Err(e) => eprintln!(
            "unmounted {}; the view snapshot {key} was not removed: {e}",
            a.target.display()
        ),
    }
    println!("unmounted {}", a.target.display());
    Ok(())
}
