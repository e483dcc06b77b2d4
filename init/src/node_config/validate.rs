//! Validating a node configuration change before anything is written: each file's own shape,
//! then the programs that will read the files judge them with their own parsers — berthd its
//! drop-ins and `hosts.toml` (`berthd --check-config`), the listener its certificate and key
//! (`berth-apid --check`) — on staged copies under the scratch directory, so a change that
//! would keep berthd or the listener from starting is refused instead of written.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{Env, Kind, NodeConfigError};
use crate::config::{Config, ConfigError};

/// One file to write (`data`) or remove (`None`).
#[derive(Debug)]
pub struct Change {
    /// Relative to the node configuration directory.
    pub rel: String,
    /// What it is.
    pub kind: Kind,
    /// The new content, or removal.
    pub data: Option<Vec<u8>>,
}

fn invalid(rel: &str, message: impl Into<String>) -> NodeConfigError {
    NodeConfigError::Invalid {
        path: rel.to_string(),
        message: message.into(),
    }
}

fn text<'a>(c: &'a Change, data: &'a [u8]) -> Result<&'a str, NodeConfigError> {
    std::str::from_utf8(data).map_err(|_| invalid(&c.rel, "not UTF-8 text"))
}

/// The node file, by init's own strict parser.
fn node_file(c: &Change, data: &[u8]) -> Result<(), NodeConfigError> {
    match Config::parse(Path::new(&c.rel), text(c, data)?) {
        Ok(_) => Ok(()),
        Err(ConfigError::Invalid {
            line, key, message, ..
        }) => {
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            let key = key.map(|k| format!("key {k}: ")).unwrap_or_default();
            Err(invalid(&c.rel, format!("{at}{key}{message}")))
        }
        Err(e) => Err(invalid(&c.rel, e.to_string())),
    }
}

/// TOML syntax, the line of the first error.
fn toml_syntax(c: &Change, data: &[u8]) -> Result<(), NodeConfigError> {
    let t = text(c, data)?;
    t.parse::<toml::Table>().map(drop).map_err(|e| {
        let line = e
            .span()
            .map(|s| t[..s.start.min(t.len())].matches('\n').count() + 1);
        let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
        invalid(&c.rel, format!("{at}invalid TOML: {}", e.message().trim()))
    })
}

/// Certificates and keys: PEM, and a key file holds a private key.
fn pem(c: &Change, data: &[u8]) -> Result<(), NodeConfigError> {
    let t = text(c, data)?;
    if !t.contains("-----BEGIN ") || !t.contains("-----END ") {
        return Err(invalid(&c.rel, "expected PEM (-----BEGIN … -----END …)"));
    }
    let key_name = c.rel.ends_with(".key");
    if key_name != super::has_private_key(data) {
        return Err(invalid(
            &c.rel,
            if key_name {
                "a .key file must hold a PEM private key"
            } else {
                "a private key must be in a file ending in .key"
            },
        ));
    }
    Ok(())
}

/// Runs a validating helper; its standard error (or status) is the refusal.
fn helper(program: &Path, args: &[String], rel: &str) -> Result<(), NodeConfigError> {
    let out = crate::reaper::output(Command::new(program).args(args)).map_err(super::io(
        format!("cannot run {} to check {rel}", program.display()),
    ))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(invalid(
        rel,
        if message.is_empty() {
            format!("{} refused it ({})", program.display(), out.status)
        } else {
            message
        },
    ))
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    fn new(env: &Env) -> Result<Scratch, NodeConfigError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = env
            .scratch
            .join(format!("check-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(super::io("cannot create a scratch directory"))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        Ok(Scratch(dir))
    }

    fn write(&self, rel: &str, data: &[u8]) -> Result<PathBuf, NodeConfigError> {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(super::io("cannot stage a file"))?;
        }
        crate::atomic::write(&p, data, 0o600).map_err(super::io("cannot stage a file"))?;
        Ok(p)
    }
}

/// berthd's judgement of the drop-ins and host directories the change touches.
fn berthd(env: &Env, changes: &[Change], scratch: &Scratch) -> Result<(), NodeConfigError> {
    let mut args = vec!["--check-config".to_string()];
    let mut first = None;
    let mut hosts = std::collections::BTreeSet::new();
    for c in changes {
        match &c.kind {
            Kind::DropIn => {
                let live = env.dir.join(&c.rel);
                let staged = match &c.data {
                    Some(d) => scratch.write(&c.rel, d)?.display().to_string(),
                    None => String::new(),
                };
                args.push("--override".into());
                args.push(format!("{}={staged}", live.display()));
                first.get_or_insert(c.rel.clone());
            }
            Kind::Hosts { host } | Kind::HostFile { host } => {
                hosts.insert(host.clone());
                first.get_or_insert(c.rel.clone());
            }
            _ => {}
        }
    }
    let Some(first) = first else { return Ok(()) };
    for host in hosts {
        // The host directory as it will be: what is there, then the change over it.
        let rel_dir = format!("certs.d/{host}");
        if let Ok(entries) = std::fs::read_dir(env.dir.join(&rel_dir)) {
            for e in entries.flatten() {
                if e.path().is_file() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let data = std::fs::read(e.path()).map_err(super::io("cannot read certs.d"))?;
                    scratch.write(&format!("{rel_dir}/{name}"), &data)?;
                }
            }
        }
        let staged_dir = scratch.0.join(&rel_dir);
        std::fs::create_dir_all(&staged_dir).map_err(super::io("cannot stage certs.d"))?;
        for c in changes
            .iter()
            .filter(|c| c.rel.starts_with(&format!("{rel_dir}/")))
        {
            match &c.data {
                Some(d) => {
                    scratch.write(&c.rel, d)?;
                }
                None => {
                    let _ = std::fs::remove_file(scratch.0.join(&c.rel));
                }
            }
        }
        if staged_dir.join("hosts.toml").is_file() {
            args.push("--check-hosts".into());
            args.push(staged_dir.display().to_string());
        }
    }
    helper(&env.berthd, &args, &first)
}

/// The listener's judgement of its certificate and key, when the change touches them and all
/// three (CA, certificate, key) will be there.
fn listener(env: &Env, changes: &[Change], scratch: &Scratch) -> Result<(), NodeConfigError> {
    const TRIPLE: [&str; 3] = ["remote/ca.pem", "remote/node.pem", "remote/node.key"];
    if !changes.iter().any(|c| TRIPLE.contains(&c.rel.as_str())) {
        return Ok(());
    }
    let mut paths = Vec::new();
    for rel in TRIPLE {
        match changes.iter().find(|c| c.rel == rel) {
            Some(Change { data: Some(d), .. }) => paths.push(scratch.write(rel, d)?),
            Some(Change { data: None, .. }) => return Ok(()),
            None if env.dir.join(rel).is_file() => paths.push(env.dir.join(rel)),
            None => return Ok(()),
        }
    }
    let mut args = vec!["--check".to_string()];
    for (flag, p) in ["--ca", "--cert", "--key"].iter().zip(&paths) {
        args.push(flag.to_string());
        args.push(p.display().to_string());
    }
    helper(&env.apid, &args, "remote/")
}

/// Validates the whole change.
pub fn all(env: &Env, changes: &[Change]) -> Result<(), NodeConfigError> {
    for c in changes {
        let Some(data) = &c.data else { continue };
        match &c.kind {
            Kind::NodeFile => node_file(c, data)?,
            Kind::DropIn | Kind::Hosts { .. } => toml_syntax(c, data)?,
            Kind::HostFile { .. } | Kind::Credential if c.rel.ends_with(".toml") => {
                toml_syntax(c, data)?
            }
            Kind::HostFile { .. } | Kind::Credential => pem(c, data)?,
        }
    }
    let needs_helper = changes.iter().any(|c| {
        matches!(
            c.kind,
            Kind::DropIn | Kind::Hosts { .. } | Kind::HostFile { .. }
        ) || c.rel.starts_with("remote/")
    });
    if !needs_helper {
        return Ok(());
    }
    let scratch = Scratch::new(env)?;
    berthd(env, changes, &scratch)?;
    listener(env, changes, &scratch)
}
