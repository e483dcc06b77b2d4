//! `berthctl config reload`: berthd re-reads its configuration without a restart, like
//! SIGHUP (Config service, `Reload`), and says what it applied, what needs a restart, its
//! warnings and the files it read. An invalid file is refused and the running one kept.

use berth_api::proto::config as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, Format};

/// `config reload` arguments.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Reloads and reports.
pub async fn run(g: &Globals, a: ReloadArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let r = berthd
        .bounded(
            "Reload",
            berthd
                .config()
                .reload(berthd.plain_ctx(), &pb::ReloadRequest::new()),
        )
        .await?;
    match a.format {
        Format::Json => print_json(&serde_json::json!({
            "applied": r.applied,
            "needs_restart": r.needs_restart,
            "warnings": r.warnings,
            "sources": r.sources,
        })),
        Format::Table => {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "(nothing)".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!("reloaded from: {}", list(&r.sources));
            println!("applied:       {}", list(&r.applied));
            println!("needs restart: {}", list(&r.needs_restart));
            for w in &r.warnings {
                println!("warning: {w}");
            }
        }
    }
    Ok(())
}
