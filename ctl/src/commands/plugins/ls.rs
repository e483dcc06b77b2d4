//! `berthctl plugins ls`: the engine's plugins with their status (Introspection service,
//! `Plugins`), filtered by `type==`/`id==`: TYPE, ID, STATUS, REASON.

use berth_api::proto::introspection::{Plugin, PluginStatus};

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, sorted, table, Format};

/// `plugins ls` arguments.
#[derive(Debug, clap::Args)]
pub struct LsArgs {
    /// `type==<type>` or `id==<id>`; repeatable, all must match.
    #[arg(long, short = 'f')]
    filter: Vec<String>,
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
    /// Print only `type.id`.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Lists the plugins.
pub async fn run(g: &Globals, a: LsArgs) -> Result<(), Error> {
    let plugins = connect::client(g).await?.plugins(a.filter).await?;
    if a.quiet {
        for p in &plugins {
            println!("{}.{}", p.type_, p.id);
        }
    } else if a.format == Format::Json {
        print_json(&plugins.iter().map(plugin_json).collect());
    } else {
        let rows: Vec<Vec<String>> = plugins
            .iter()
            .map(|p| {
                vec![
                    p.type_.clone(),
                    p.id.clone(),
                    status_name(p).to_string(),
                    p.reason.clone(),
                ]
            })
            .collect();
        print!("{}", table(&["TYPE", "ID", "STATUS", "REASON"], &rows));
    }
    Ok(())
}

fn status_name(p: &Plugin) -> &'static str {
    match p.status.enum_value() {
        Ok(PluginStatus::OK) => "ok",
        Ok(PluginStatus::SKIPPED) => "skipped",
        Ok(PluginStatus::ERROR) => "error",
        Err(_) => "unknown",
    }
}

fn plugin_json(p: &Plugin) -> serde_json::Value {
    serde_json::json!({
        "type": p.type_,
        "id": p.id,
        "status": status_name(p),
        "reason": p.reason,
        "requires": p.requires,
        "exports": sorted(&p.exports),
    })
}
