//! `berthctl snapshots prepare KEY [PARENT]`: a new active snapshot (Snapshots service,
//! `Prepare`); prints its mounts.

use berth_api::proto::snapshots as pb;

use super::{print_mounts, Snapshots};
use crate::error::Error;

/// `snapshots prepare` arguments.
#[derive(Debug, clap::Args)]
pub struct PrepareArgs {
    key: String,
    parent: Option<String>,
}

/// Prepares the snapshot.
pub(super) async fn run(s: &Snapshots, a: PrepareArgs) -> Result<(), Error> {
    let req = pb::PrepareSnapshotRequest {
        snapshotter: s.snapshotter.clone(),
        key: a.key,
        parent: a.parent.unwrap_or_default(),
        ..Default::default()
    };
    let r = s
        .bounded("Snapshots.Prepare", s.client.prepare(s.ctx(), &req))
        .await?;
    print_mounts(&r.mounts);
    Ok(())
}
