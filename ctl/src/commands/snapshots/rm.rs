//! `berthctl snapshots rm KEY…`: removes snapshots (Snapshots service, `Remove`), children
//! before parents as given; tries every key and fails if any failed (each earlier failure is
//! printed, the last one is the error).

use berth_api::proto::snapshots as pb;

use super::Snapshots;
use crate::error::Error;

/// `snapshots rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    #[arg(required = true)]
    keys: Vec<String>,
}

/// Removes the snapshots.
pub(super) async fn run(s: &Snapshots, a: RmArgs) -> Result<(), Error> {
    let mut last = None;
    for key in a.keys {
        let req = pb::RemoveSnapshotRequest {
            snapshotter: s.snapshotter.clone(),
            key,
            ..Default::default()
        };
        if let Err(e) = s
            .bounded("Snapshots.Remove", s.client.remove(s.ctx(), &req))
            .await
        {
            if let Some(prev) = last.replace(e) {
                eprintln!("berthctl: error: {prev}");
            }
        }
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
