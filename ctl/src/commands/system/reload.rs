//! `berthctl system reload`: berth-init reads its configuration layers again and applies what
//! can change while the node runs — the remote API (`[remote]`: started, stopped, new
//! credentials or deny list), the clock floor — and asks berthd to reload (System service,
//! `Reload`; docs/init-config.md, "Reload"). Like SIGHUP to init.

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;
use crate::output::{print_json, Format};

/// `system reload` arguments.
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Reloads and prints what init did; invalid keys go to standard error.
pub(super) async fn run(init: &Init, a: ReloadArgs) -> Result<(), Error> {
    let r = init
        .call(
            "Reload",
            init.client.reload(init.ctx(), &pb::ReloadRequest::new()),
        )
        .await?;
    print_report(&r, a.format);
    Ok(())
}

/// A reload's report (also `node config put`'s).
pub fn print_report(r: &pb::ReloadResponse, format: Format) {
    if format == Format::Json {
        print_json(&serde_json::json!({ "applied": r.applied, "errors": r.errors }));
        return;
    }
    for line in &r.applied {
        println!("{line}");
    }
    for line in &r.errors {
        eprintln!("berthctl: {line}");
    }
}
