//! `berthctl snapshots mounts KEY`: the mounts of an active snapshot or a view (Snapshots
//! service, `Mounts`), one `type source options` line each.

use berth_api::proto::snapshots as pb;

use super::{print_mounts, Snapshots};
use crate::error::Error;

/// `snapshots mounts` arguments.
#[derive(Debug, clap::Args)]
pub struct MountsArgs {
    key: String,
}

/// Prints the mounts.
pub(super) async fn run(s: &Snapshots, a: MountsArgs) -> Result<(), Error> {
    let req = pb::MountsRequest {
        snapshotter: s.snapshotter.clone(),
        key: a.key,
        ..Default::default()
    };
    let r = s
        .bounded("Snapshots.Mounts", s.client.mounts(s.ctx(), &req))
        .await?;
    print_mounts(&r.mounts);
    Ok(())
}
