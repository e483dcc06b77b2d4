//! `berthctl pki ca`: a new fleet CA.

use std::path::PathBuf;

use berth_remote::pki::{Ca, Validity};

use super::{pki_err, when, write_new};
use crate::error::Error;

/// `pki ca` arguments.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// The CA's name (its CN).
    #[arg(long, default_value = "berth fleet CA")]
    name: String,
    /// Days it is valid.
    #[arg(long, default_value_t = 3650)]
    days: u32,
    /// Where to write `ca.pem` and `ca.key`.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// Makes and writes the CA.
pub(super) fn run(a: CaArgs) -> Result<(), Error> {
    let v = Validity::days(a.days);
    let ca = Ca::create(&a.name, v).map_err(pki_err)?;
    let cert = a.out.join("ca.pem");
    let key = a.out.join("ca.key");
    write_new(&cert, ca.cert_pem(), 0o644, a.force)?;
    write_new(&key, &ca.key_pem(), 0o600, a.force)?;
    println!(
        "fleet CA {:?}: {} (valid until {}), key {} — keep the key off the nodes",
        a.name,
        cert.display(),
        when(v.not_after),
        key.display()
    );
    Ok(())
}
