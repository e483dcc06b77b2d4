//! `berthctl containers info ID`: one container as JSON, its OCI spec included (Containers
//! service, `Get`).

use berth_api::proto::containers as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, sorted};

/// `containers info` arguments.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    id: String,
}

/// Prints the container.
pub async fn run(g: &Globals, a: InfoArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::GetContainerRequest {
        id: a.id,
        ..Default::default()
    };
    let r = berthd
        .containers()
        .get(berthd.ctx(), &req)
        .await
        .map_err(Error::call("get container"))?;
    let c = r.container.into_option().unwrap_or_default();
    let spec: serde_json::Value =
        serde_json::from_slice(&c.spec).unwrap_or(serde_json::Value::Null);
    print_json(&serde_json::json!({
        "id": c.id, "image": c.image, "runtime": c.runtime, "snapshotter": c.snapshotter,
        "snapshot_key": c.snapshot_key, "labels": sorted(&c.labels),
        "created_at": c.created_at, "updated_at": c.updated_at, "spec": spec,
    }));
    Ok(())
}
