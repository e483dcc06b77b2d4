//! `berthctl images mount NAME TARGET`: mounts an image's filesystem read-only on TARGET —
//! berthd prepares a view snapshot (Transfer service, `View`) keyed by the mount point, and
//! berthctl mounts what it answers (berth-api's mount helper).

use std::path::PathBuf;

use berth_api::proto::transfer as pb;

use super::view_key;
use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `images mount` arguments.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The image.
    name: String,
    /// Where to mount its filesystem (read-only view).
    target: PathBuf,
    #[arg(long, default_value = "", help = concat!(
        "Snapshotter (", snapshotters!(), "; default: berthd's default)"
    ))]
    snapshotter: String,
}

/// Prepares the view and mounts it.
pub async fn run(g: &Globals, a: MountArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let key = view_key(&a.target);
    let req = pb::ViewRequest {
        name: a.name.clone(),
        snapshotter: a.snapshotter.clone(),
        key: key.clone(),
        ..Default::default()
    };
    let resp = berthd
        .transfer()
        .view(berthd.stream_ctx(), &req)
        .await
        .map_err(Error::call("Transfer.View"))?;
    let mounts: Vec<berth_api::mount::Mount> = resp
        .mounts
        .into_iter()
        .map(|m| berth_api::mount::Mount {
            fs_type: m.type_,
            source: m.source,
            target: None,
            options: m.options,
        })
        .collect();
    berth_api::mount::mount_all(&mounts, &a.target).map_err(|e| Error::Mount {
        what: a.name.clone(),
        target: a.target.clone(),
        reason: e.to_string(),
    })?;
    println!(
        "{} mounted on {} (snapshot {key}, chain {})",
        a.name,
        a.target.display(),
        resp.chain_id
    );
    Ok(())
}
