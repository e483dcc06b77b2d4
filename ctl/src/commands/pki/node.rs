//! `berthctl pki node`: a node certificate (serverAuth; its names and addresses as SANs, which
//! clients check against the node they meant).

use std::net::IpAddr;

use berth_remote::pki::Validity;

use super::{load_ca, pki_err, when, write_issued, Issue};
use crate::error::Error;

/// `pki node` arguments.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// The node's name (CN; also a DNS SAN unless --dns is given).
    #[arg(long)]
    name: String,
    /// DNS names clients use for it (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    dns: Vec<String>,
    /// IP addresses clients use for it.
    #[arg(long, value_delimiter = ',')]
    ip: Vec<IpAddr>,
    /// Days it is valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
    #[command(flatten)]
    issue: Issue,
}

/// Issues and writes it.
pub(super) fn run(a: NodeArgs) -> Result<(), Error> {
    let ca = load_ca(&a.issue.ca_dir)?;
    let dns = if a.dns.is_empty() && a.ip.is_empty() {
        vec![a.name.clone()]
    } else {
        a.dns.clone()
    };
    let v = Validity::days(a.days);
    let issued = ca.issue_node(&a.name, &dns, &a.ip, v).map_err(pki_err)?;
    let (cert, key) = write_issued(&a.issue, &a.name, &issued)?;
    let names: Vec<String> = dns
        .iter()
        .cloned()
        .chain(a.ip.iter().map(IpAddr::to_string))
        .collect();
    println!(
        "node {}: {} and {} (names {}; serial {}; valid until {})",
        a.name,
        cert.display(),
        key.display(),
        names.join(", "),
        issued.serial,
        when(v.not_after)
    );
    Ok(())
}
