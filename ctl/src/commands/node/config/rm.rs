//! `berthctl node config rm PATH …`: removes files of the node's configuration (checked as a
//! put is: a drop-in's removal must leave berthd a configuration it can start with).

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;
use crate::output::Format;

/// `node config rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Paths relative to /var/etc/berth.
    #[arg(required = true)]
    paths: Vec<String>,
    /// Remove only; apply at the next reload or boot.
    #[arg(long)]
    no_reload: bool,
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Removes and reports.
pub(super) async fn run(init: &Init, a: RmArgs) -> Result<(), Error> {
    let req = pb::NodeConfigPutRequest {
        remove: a.paths,
        reload: !a.no_reload,
        ..Default::default()
    };
    let r = init
        .call(
            "NodeConfigPut",
            init.client.node_config_put(init.ctx(), &req),
        )
        .await?;
    super::put::report(&r, a.format);
    Ok(())
}
