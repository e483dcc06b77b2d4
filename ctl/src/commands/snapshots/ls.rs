//! `berthctl snapshots ls`: the snapshots of the snapshotter (Snapshots service, `List`, with
//! containerd filters): KEY, PARENT, KIND.

use berth_api::proto::snapshots as pb;

use super::Snapshots;
use crate::error::Error;
use crate::output::{print_json, sorted, table, Format};

/// `snapshots ls` arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// containerd filter (`kind==committed`, `labels.x`, …); repeatable, any may match.
    #[arg(long, short = 'f')]
    filter: Vec<String>,
    #[arg(long, value_parser = Format::described_for_scripts(), default_value_t = Format::Table)]
    format: Format,
    /// Print only keys.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Lists the snapshots.
pub(super) async fn run(s: &Snapshots, a: LsArgs) -> Result<(), Error> {
    let infos = s.list(a.filter).await?;
    if a.quiet {
        for i in &infos {
            println!("{}", i.name);
        }
    } else if a.format == Format::Json {
        print_json(&infos.iter().map(info_json).collect());
    } else {
        let rows: Vec<Vec<String>> = infos
            .iter()
            .map(|i| vec![i.name.clone(), i.parent.clone(), kind_name(i).to_string()])
            .collect();
        print!("{}", table(&["KEY", "PARENT", "KIND"], &rows));
    }
    Ok(())
}

fn kind_name(i: &pb::Info) -> &'static str {
    match i.kind.enum_value() {
        Ok(pb::Kind::VIEW) => "view",
        Ok(pb::Kind::ACTIVE) => "active",
        Ok(pb::Kind::COMMITTED) => "committed",
        _ => "unknown",
    }
}

fn info_json(i: &pb::Info) -> serde_json::Value {
    serde_json::json!({
        "key": i.name,
        "parent": i.parent,
        "kind": kind_name(i),
        "created_ns": i.created_at_ns,
        "updated_ns": i.updated_at_ns,
        "labels": sorted(&i.labels),
    })
}
