//! `berthctl images unmount TARGET`: unmounts what `images mount` mounted there, then removes
//! its view snapshot (Snapshots service, `Remove`); a snapshot that cannot be removed is
//! reported, the unmount still counts.

use std::path::PathBuf;

use berth_api::proto::snapshots as pb;

use super::view_key;
use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `images unmount` arguments.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    /// The mount point given to `images mount`.
    target: PathBuf,
}

/// Unmounts and removes the view.
pub async fn run(g: &Globals, a: UnmountArgs) -> Result<(), Error> {
    let key = view_key(&a.target);
    nix::mount::umount2(&a.target, nix::mount::MntFlags::empty()).map_err(|source| {
        Error::Unmount {
            target: a.target.clone(),
            source,
        }
    })?;
    let berthd = Berthd::connect(g).await?;
    let req = pb::RemoveSnapshotRequest {
        key: key.clone(),
        ..Default::default()
    };
    if let Err(e) = berthd.snapshots().remove(berthd.ctx(), &req).await {
        eprintln!(
            "unmounted {}; the view snapshot {key} was not removed: {e}",
            a.target.display()
        );
    }
    println!("unmounted {}", a.target.display());
    Ok(())
}
