//! `berthctl node config ls`: the node's configuration files.

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;
use crate::output::{age, print_json, table, Format};

/// `node config ls` arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Lists.
pub(super) async fn run(init: &Init, a: LsArgs) -> Result<(), Error> {
    let r = init
        .call(
            "NodeConfigList",
            init.client
                .node_config_list(init.ctx(), &pb::NodeConfigListRequest::new()),
        )
        .await?;
    if a.format == Format::Json {
        let files: Vec<_> = r
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path, "size": f.size, "mode": format!("{:04o}", f.mode),
                    "modified_us": f.modified_us,
                })
            })
            .collect();
        print_json(&serde_json::json!(files));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r
        .files
        .iter()
        .map(|f| {
            vec![
                f.path.clone(),
                f.size.to_string(),
                format!("{:04o}", f.mode),
                age(f.modified_us.saturating_mul(1000)),
            ]
        })
        .collect();
    print!("{}", table(&["PATH", "SIZE", "MODE", "AGE"], &rows));
    Ok(())
}
