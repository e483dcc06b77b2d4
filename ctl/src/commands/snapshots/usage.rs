//! `berthctl snapshots usage [KEY…]`: disk usage of snapshots, all when no key is given
//! (Snapshots service, `Usage`, and `List`): KEY, SIZE, INODES.

use berth_api::proto::snapshots as pb;

use super::Snapshots;
use crate::error::Error;
use crate::output::{human_size, print_json, table, Format};

/// `snapshots usage` arguments.
#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    keys: Vec<String>,
    #[arg(long, value_parser = Format::described_for_scripts(), default_value_t = Format::Table)]
    format: Format,
}

/// Prints the usage of each snapshot.
pub(super) async fn run(s: &Snapshots, a: UsageArgs) -> Result<(), Error> {
    let keys = if a.keys.is_empty() {
        s.list(Vec::new())
            .await?
            .into_iter()
            .map(|i| i.name)
            .collect()
    } else {
        a.keys
    };
    let mut rows = Vec::new();
    for key in keys {
        let req = pb::UsageRequest {
            snapshotter: s.snapshotter.clone(),
            key: key.clone(),
            ..Default::default()
        };
        let u = s
            .bounded("Snapshots.Usage", s.client.usage(s.ctx(), &req))
            .await?;
        rows.push((key, u.size, u.inodes));
    }
    if a.format == Format::Json {
        print_json(
            &rows
                .iter()
                .map(|(k, s, n)| serde_json::json!({"key": k, "size": s, "inodes": n}))
                .collect(),
        );
    } else {
        let rows: Vec<Vec<String>> = rows
            .into_iter()
            .map(|(k, s, n)| vec![k, human_size(s), n.to_string()])
            .collect();
        print!("{}", table(&["KEY", "SIZE", "INODES"], &rows));
    }
    Ok(())
}
