//! `berthctl snapshots commit NAME KEY`: commits an active snapshot under a name (Snapshots
//! service, `Commit`).

use berth_api::proto::snapshots as pb;

use super::Snapshots;
use crate::error::Error;

/// `snapshots commit` arguments.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    name: String,
    key: String,
}

/// Commits the snapshot.
pub(super) async fn run(s: &Snapshots, a: CommitArgs) -> Result<(), Error> {
    let req = pb::CommitSnapshotRequest {
        snapshotter: s.snapshotter.clone(),
        name: a.name,
        key: a.key,
        ..Default::default()
    };
    s.bounded("Snapshots.Commit", s.client.commit(s.ctx(), &req))
        .await?;
    Ok(())
}
