//! `berthctl containers ls`: the namespace's containers (Containers service, `List`):
//! CONTAINER, IMAGE, RUNTIME, SNAPSHOTTER.

use berth_api::proto::containers as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::table;

/// `containers ls` arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Lists the containers.
pub async fn run(g: &Globals, a: LsArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let l = berthd
        .containers()
        .list(berthd.ctx(), &pb::ListContainersRequest::default())
        .await
        .map_err(Error::call("list containers"))?;
    if a.quiet {
        for c in &l.containers {
            println!("{}", c.id);
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = l
        .containers
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.image.clone(),
                c.runtime.clone(),
                c.snapshotter.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["CONTAINER", "IMAGE", "RUNTIME", "SNAPSHOTTER"], &rows)
    );
    Ok(())
}
