//! `berthctl node config put PATH=FILE …`: files from this machine onto the node's state disk,
//! validated together by the node, written atomically, then a reload applies them.

use std::path::PathBuf;

use berth_api::proto::system as pb;

use crate::commands::system::reload::print_report;
use crate::connect::Init;
use crate::error::Error;
use crate::output::Format;

/// `node config put` arguments.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// `PATH=LOCAL_FILE`: PATH relative to /var/etc/berth (`node.toml`,
    /// `berthd.d/<name>.toml`, `certs.d/<host>/<file>`, `remote/<file>`).
    #[arg(required = true, value_name = "PATH=FILE")]
    files: Vec<String>,
    /// Write only; apply at the next reload or boot.
    #[arg(long)]
    no_reload: bool,
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Reads the local files, puts them, prints what was written and what the reload did.
pub(super) async fn run(init: &Init, a: PutArgs) -> Result<(), Error> {
    let mut files = Vec::new();
    for spec in &a.files {
        let (path, local) = spec.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "{spec:?}: expected PATH=FILE (e.g. node.toml=./node.toml)"
            ))
        })?;
        let local = PathBuf::from(local);
        let content =
            std::fs::read(&local).map_err(Error::io(format!("cannot read {}", local.display())))?;
        files.push(pb::NodeFile {
            path: path.to_string(),
            content,
            ..Default::default()
        });
    }
    let req = pb::NodeConfigPutRequest {
        files,
        reload: !a.no_reload,
        ..Default::default()
    };
    let r = init
        .call(
            "NodeConfigPut",
            init.client.node_config_put(init.ctx(), &req),
        )
        .await?;
    report(&r, a.format);
    Ok(())
}

/// What a put (or rm) did.
pub(super) fn report(r: &pb::NodeConfigPutResponse, format: Format) {
    if format == Format::Json {
        let reload = r
            .reload
            .as_ref()
            .map(|x| serde_json::json!({ "applied": x.applied, "errors": x.errors }));
        crate::output::print_json(&serde_json::json!({
            "written": r.written, "removed": r.removed, "reload": reload,
        }));
        return;
    }
    for p in &r.written {
        println!("wrote {p}");
    }
    for p in &r.removed {
        println!("removed {p}");
    }
    if let Some(reload) = r.reload.as_ref() {
        print_report(reload, Format::Table);
    }
}
