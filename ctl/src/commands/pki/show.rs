//! `berthctl pki show FILE` and `berthctl pki fingerprint FILE`: certificates read back.

use std::path::PathBuf;

use berth_remote::certinfo::{certificates, describe, fingerprint_der};

use super::when;
use crate::error::Error;
use crate::output::{print_json, Format};

/// `pki show` arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A PEM file (every certificate in it is shown).
    file: PathBuf,
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// `pki fingerprint` arguments.
#[derive(Debug, clap::Args)]
pub struct FingerprintArgs {
    /// A PEM file (its first certificate).
    file: PathBuf,
}

/// The DER of each certificate in `file`.
fn read(file: &PathBuf) -> Result<Vec<Vec<u8>>, Error> {
    let text = std::fs::read_to_string(file)
        .map_err(Error::io(format!("cannot read {}", file.display())))?;
    let certs =
        certificates(&text).map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    Ok(certs.iter().map(|c| c.as_ref().to_vec()).collect())
}

/// Prints each certificate.
pub(super) fn show(a: ShowArgs) -> Result<(), Error> {
    let mut out = Vec::new();
    for der in read(&a.file)? {
        let i = describe(&der).map_err(|e| Error::Usage(format!("{}: {e}", a.file.display())))?;
        if a.format == Format::Json {
            out.push(serde_json::json!({
                "subject": i.subject, "issuer": i.issuer,
                "common_name": i.identity.common_name, "role": i.identity.roles.to_string(),
                "serial": i.serial().as_str(), "not_before": when(i.not_before),
                "not_after": when(i.not_after), "names": i.names, "ca": i.is_ca,
                "usages": i.usages, "fingerprint": i.fingerprint,
            }));
            continue;
        }
        let kind = if i.is_ca {
            "CA".to_string()
        } else {
            i.usages.join(", ")
        };
        println!("subject:     {}", i.subject);
        println!("issuer:      {}", i.issuer);
        println!("kind:        {kind}");
        if !i.is_ca && i.usages.contains(&"clientAuth") {
            println!("role:        {}", i.identity.roles);
        }
        println!("serial:      {}", i.serial());
        println!(
            "valid:       {} to {}",
            when(i.not_before),
            when(i.not_after)
        );
        if !i.names.is_empty() {
            println!("names:       {}", i.names.join(", "));
        }
        println!("fingerprint: {}", i.fingerprint);
    }
    if a.format == Format::Json {
        print_json(&serde_json::json!(out));
    }
    Ok(())
}

/// Prints the first certificate's fingerprint.
pub(super) fn fingerprint(a: FingerprintArgs) -> Result<(), Error> {
    let certs = read(&a.file)?;
    println!("{}", fingerprint_der(&certs[0]));
    Ok(())
}
