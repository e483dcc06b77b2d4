//! `berthctl snapshots view KEY PARENT`: a read-only view of a committed snapshot (Snapshots
//! service, `View`); prints its mounts.

use berth_api::proto::snapshots as pb;

use super::{print_mounts, Snapshots};
use crate::error::Error;

/// `snapshots view` arguments.
#[derive(Debug, clap::Args)]
pub struct ViewArgs {
    key: String,
    parent: String,
}

/// Creates the view.
pub(super) async fn run(s: &Snapshots, a: ViewArgs) -> Result<(), Error> {
    let req = pb::ViewSnapshotRequest {
        snapshotter: s.snapshotter.clone(),
        key: a.key,
        parent: a.parent,
        ..Default::default()
    };
    let r = s
        .bounded("Snapshots.View", s.client.view(s.ctx(), &req))
        .await?;
    print_mounts(&r.mounts);
    Ok(())
}
