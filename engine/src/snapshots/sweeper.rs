//! The garbage collector's view of the loaded snapshotters ([`SnapshotSweeper`]).
//!
//! The collector removes backend snapshots that no metadata record references. Only
//! snapshots the engine created on behalf of records take part: those carrying the
//! `containerd.io/snapshot.ref` label that unpacking sets (see [`crate::unpack`]). Snapshots
//! made directly through the Snapshots API (`berthctl snapshots prepare`) have no record yet
//! and are left alone, so GC never removes a snapshot a client is using.

use std::collections::HashMap;

use crate::metadata::gc::{SnapshotSweeper, SweepError};
use crate::snapshots::Snapshotters;
use crate::unpack::LABEL_SNAPSHOT_REF;

impl SnapshotSweeper for Snapshotters {
    fn snapshotters(&self) -> Vec<String> {
        self.ids()
    }

    fn backend_keys(&self, snapshotter: &str) -> Result<Vec<String>, SweepError> {
        let sn = self
            .lookup(snapshotter)
            .ok_or_else(|| SweepError::from(format!("snapshotter {snapshotter} is not loaded")))?;
        let mut parents: HashMap<String, String> = HashMap::new();
        sn.walk(&[], &mut |info| {
            if info.labels.contains_key(LABEL_SNAPSHOT_REF) {
                parents.insert(info.name.clone(), info.parent.clone());
            }
            Ok(())
        })
        .map_err(|e| SweepError::from(e.to_string()))?;
        // Parents before children: order by depth in the parent chain.
        let depth = |start: &String| {
            let mut d = 0usize;
            let mut name = start;
            while let Some(p) = parents.get(name).filter(|p| !p.is_empty()) {
                d += 1;
                name = p;
                if d > parents.len() {
                    break;
                }
            }
            d
        };
        let mut keys: Vec<(usize, String)> =
            parents.keys().map(|k| (depth(k), k.clone())).collect();
        keys.sort();
        Ok(keys.into_iter().map(|(_, k)| k).collect())
    }

    fn remove(&self, snapshotter: &str, backend_key: &str) -> Result<(), SweepError> {
        let sn = self
            .lookup(snapshotter)
            .ok_or_else(|| SweepError::from(format!("snapshotter {snapshotter} is not loaded")))?;
        sn.remove(backend_key)
            .map_err(|e| SweepError::from(e.to_string()))
    }
}
