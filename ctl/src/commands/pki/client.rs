//! `berthctl pki client`: a client certificate whose Organization is its role (clientAuth),
//! valid from its CA's start (see the group's docs) until `--days` from now.

use berth_remote::pki::Validity;
use berth_remote::roles::Role;

use super::{load_ca, pki_err, when, write_issued, Issue};
use crate::error::Error;

/// `pki client` arguments.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Who it is for (CN; in the node's audit lines).
    #[arg(long)]
    name: String,
    /// `reader`, `operator` or `admin` (docs/remote-api.md, roles table).
    #[arg(long, value_parser = ["reader", "operator", "admin"])]
    role: String,
    /// Days it is valid.
    #[arg(long, default_value_t = 90)]
    days: u32,
    #[command(flatten)]
    issue: Issue,
}

/// Issues and writes it.
pub(super) fn run(a: ClientArgs) -> Result<(), Error> {
    let ca = load_ca(&a.issue.ca_dir)?;
    let role = match a.role.as_str() {
        "admin" => Role::Admin,
        "operator" => Role::Operator,
        _ => Role::Reader,
    };
    let v = Validity::since(ca.not_before(), a.days).map_err(pki_err)?;
    let issued = ca.issue_client(&a.name, role, v).map_err(pki_err)?;
    let (cert, key) = write_issued(&a.issue, &a.name, &issued)?;
    println!(
        "client {} ({}): {} and {} (serial {}; valid until {})",
        a.name,
        a.role,
        cert.display(),
        key.display(),
        issued.serial,
        when(v.not_after)
    );
    Ok(())
}
