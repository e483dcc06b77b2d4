//! `berthctl node config get PATH`: one file of the node's configuration on standard output.

use std::io::Write;

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;

/// `node config get` arguments.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Relative to /var/etc/berth, e.g. `node.toml`, `certs.d/_default/hosts.toml`.
    path: String,
}

/// Prints the file; says so on standard error when keys were redacted.
pub(super) async fn run(init: &Init, a: GetArgs) -> Result<(), Error> {
    let req = pb::NodeConfigGetRequest {
        path: a.path.clone(),
        ..Default::default()
    };
    let r = init
        .call(
            "NodeConfigGet",
            init.client.node_config_get(init.ctx(), &req),
        )
        .await?;
    let content = r.file.as_ref().map(|f| f.content.as_slice()).unwrap_or(&[]);
    std::io::stdout()
        .write_all(content)
        .map_err(Error::io("cannot write to standard output"))?;
    if r.redacted {
        eprintln!("berthctl: private keys in {} are redacted", a.path);
    }
    Ok(())
}
