//! `berthctl pki …`: the fleet PKI of the remote API, made on the operator's machine (never on
//! a node): a fleet CA, node certificates (DNS names and IP addresses as SANs) and client
//! certificates whose Organization is their role, each with an expiry (docs/remote-api.md,
//! "Setup from zero"). `show` and `fingerprint` read certificates back: the serial for a deny
//! list, the SHA-256 for a PXE node's pin.
//!
//! Client certificates are valid from their CA's own start (not from the moment they are
//! made): a node without a time source never believes a time before its credentials' start
//! (the clock floor), and would otherwise refuse a client certificate made after its own.

mod ca;
mod client;
mod node;
mod show;

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::error::Error;

/// `berthctl pki` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a fleet CA: `ca.pem` (give it to nodes and clients) and `ca.key` (keep it safe).
    Ca(ca::CaArgs),
    /// Issue a node certificate and key (`NAME.pem`, `NAME.key`) from the CA.
    Node(node::NodeArgs),
    /// Issue a client certificate and key with a role (`NAME.pem`, `NAME.key`) from the CA.
    Client(client::ClientArgs),
    /// Print what a certificate says: subject, role, serial, validity, names, fingerprint.
    Show(show::ShowArgs),
    /// Print the SHA-256 fingerprint of a certificate (`sha256:…`, a PXE node's pin).
    Fingerprint(show::FingerprintArgs),
}

/// Runs one `pki` verb (no connection: everything happens on this machine).
pub fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Ca(a) => ca::run(a),
        Command::Node(a) => node::run(a),
        Command::Client(a) => client::run(a),
        Command::Show(a) => show::show(a),
        Command::Fingerprint(a) => show::fingerprint(a),
    }
}

fn pki_err(e: berth_remote::pki::PkiError) -> Error {
    Error::Usage(berth_api::errdefs::chain(&e))
}

/// Writes `data` to `path` with `mode`, refusing to replace a file unless `force`.
fn write_new(path: &Path, data: &str, mode: u32, force: bool) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(Error::io(format!("cannot create {}", dir.display())))?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).mode(mode);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let what = format!("cannot write {}", path.display());
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::Usage(format!("{} exists (--force to replace it)", path.display()))
        } else {
            Error::io(what.clone())(e)
        }
    })?;
    f.write_all(data.as_bytes()).map_err(Error::io(what))
}

/// Reads the CA of `dir` (`ca.pem`, `ca.key`).
fn load_ca(dir: &Path) -> Result<berth_remote::pki::Ca, Error> {
    let read = |name: &str| {
        let p = dir.join(name);
        std::fs::read_to_string(&p).map_err(Error::io(format!("cannot read {}", p.display())))
    };
    berth_remote::pki::Ca::from_pem(&read("ca.pem")?, &read("ca.key")?).map_err(pki_err)
}

/// Options every issuing verb shares.
#[derive(Debug, clap::Args)]
struct Issue {
    /// The CA's directory (`ca.pem`, `ca.key`).
    #[arg(long, default_value = ".")]
    ca_dir: PathBuf,
    /// Where to write `NAME.pem` and `NAME.key`.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

/// Writes an issued certificate and key as `<out>/<name>.pem|.key`; returns the paths.
fn write_issued(
    i: &Issue,
    name: &str,
    issued: &berth_remote::pki::Issued,
) -> Result<(PathBuf, PathBuf), Error> {
    let cert = i.out.join(format!("{name}.pem"));
    let key = i.out.join(format!("{name}.key"));
    write_new(&cert, &issued.cert_pem, 0o644, i.force)?;
    write_new(&key, &issued.key_pem, 0o600, i.force)?;
    Ok((cert, key))
}

/// `YYYY-MM-DD HH:MM UTC`.
fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}
