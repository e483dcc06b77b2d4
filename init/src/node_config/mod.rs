//! Node configuration through the control API (`NodeConfigList/Get/Put`, admin-only over the
//! remote API): the files on the state disk under [`DIR`] that make one node differ from its
//! image — the node file, berthd drop-ins, registry hosts (`certs.d`), the remote API's
//! credentials — so an operator changes a node without a shell.
//!
//! Only these paths (relative to [`DIR`]) can be named ([`Kind::of`]): `node.toml`,
//! `berthd.d/<name>.toml`, `certs.d/<host>/<file>`, `remote/<file>`. A put is validated whole
//! before anything is written ([`validate`]): the node file by init's own parser, drop-ins and
//! `hosts.toml` by berthd's (`berthd --check-config`), the listener's certificate and key
//! together by the listener's (`berth-apid --check`). Then each file is written atomically
//! ([`crate::atomic`]); credentials and keys 0600. Private keys are never read back, and
//! inline keys in a file read back are replaced by a placeholder.

pub mod validate;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// The node's configuration directory on the state disk.
pub const DIR: &str = "/var/etc/berth";
/// Largest file accepted.
pub const MAX_FILE: usize = 1 << 20;

/// What node configuration calls need: where the files are and the helpers that validate them.
#[derive(Debug, Clone)]
pub struct Env {
    /// [`DIR`] (a temporary directory in tests).
    pub dir: PathBuf,
    /// berthd's executable (`berthd --check-config`).
    pub berthd: PathBuf,
    /// The listener's executable (`berth-apid --check`).
    pub apid: PathBuf,
    /// Scratch space for validation (tmpfs).
    pub scratch: PathBuf,
}

impl Env {
    /// From the configuration at boot.
    pub fn new(config: &Config) -> Env {
        Env {
            dir: DIR.into(),
            berthd: config.berthd.path.clone(),
            apid: config.remote.path.clone(),
            scratch: "/run/berth/node-config".into(),
        }
    }
}

/// Errors of node configuration calls; the control API maps each to a ttrpc code.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// A path that names nothing this API manages.
    #[error("{path:?}: {why}")]
    Path {
        /// The path as given.
        path: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// Content that does not validate.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (with line and key when known).
        message: String,
    },
    /// No such file.
    #[error("{0}: no such file")]
    NotFound(String),
    /// A private key: never read back.
    #[error("{0}: private keys are never read back (put a new one to replace it)")]
    KeyFile(String),
    /// Reading or writing the state disk failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeConfigError {
    let what = what.into();
    move |source| NodeConfigError::Io { what, source }
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `node.toml`.
    NodeFile,
    /// `berthd.d/<name>.toml`.
    DropIn,
    /// `certs.d/<host>/hosts.toml`.
    Hosts {
        /// The host directory name.
        host: String,
    },
    /// Another file of `certs.d/<host>/` (CA certificates, client certificates and keys).
    HostFile {
        /// The host directory name.
        host: String,
    },
    /// `remote/<file>`.
    Credential,
}

fn simple_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'))
}

impl Kind {
    /// Classifies `rel` (relative to [`DIR`]); anything else is refused.
    pub fn of(rel: &str) -> Result<Kind, NodeConfigError> {
        let bad = |why| {
            Err(NodeConfigError::Path {
                path: rel.to_string(),
                why,
            })
        };
        let parts: Vec<&str> = rel.split('/').collect();
        if parts.iter().any(|p| !simple_name(p)) {
            return bad(
                "each part must be a plain name (letters, digits, . _ - :), no leading dot",
            );
        }
        match parts[..] {
            ["node.toml"] => Ok(Kind::NodeFile),
            ["berthd.d", name] if name.ends_with(".toml") => Ok(Kind::DropIn),
            ["berthd.d", _] => bad("berthd drop-ins end in .toml"),
            ["certs.d", host, "hosts.toml"] => Ok(Kind::Hosts { host: host.into() }),
            ["certs.d", host, _] => Ok(Kind::HostFile { host: host.into() }),
            ["remote", _] => Ok(Kind::Credential),
            _ => bad("not a node configuration file: node.toml, berthd.d/<name>.toml, certs.d/<host>/<file> or remote/<file>"),
        }
    }

    /// The mode a file of this kind is written with.
    pub fn mode(&self, rel: &str) -> u32 {
        match self {
            Kind::Credential => 0o600,
            _ if rel.ends_with(".key") => 0o600,
            _ => 0o644,
        }
    }
}

/// One file as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Relative to [`DIR`].
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Last change, microseconds since the epoch.
    pub modified_us: i64,
}

/// Every managed file, sorted by path.
pub fn list(env: &Env) -> Result<Vec<Info>, NodeConfigError> {
    let mut out = Vec::new();
    walk(&env.dir, &env.dir, &mut out)?;
    out.retain(|i| Kind::of(&i.path).is_ok());
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Info>) -> Result<(), NodeConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("cannot list {}", dir.display()))(e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(Info {
                path: rel.display().to_string(),
                size: meta.len(),
                mode: meta.permissions().mode() & 0o7777,
                modified_us: meta.mtime() * 1_000_000 + meta.mtime_nsec() / 1000,
            });
        }
    }
    Ok(())
}

/// Whether `data` holds a PEM private key.
pub fn has_private_key(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.contains("PRIVATE KEY-----"))
}

/// `text` with every PEM private key block replaced by a placeholder; whether any was.
pub fn redact(text: &str) -> (String, bool) {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut redacted = false;
    while let Some(i) = rest.find(BEGIN) {
        let after = &rest[i + BEGIN.len()..];
        let Some(j) = after.find("-----") else { break };
        let label = &after[..j];
        let end_marker = format!("-----END {label}-----");
        match (label.ends_with("PRIVATE KEY"), after.find(&end_marker)) {
            (true, Some(k)) => {
                out.push_str(&rest[..i]);
                out.push_str("<private key redacted>");
                rest = &after[k + end_marker.len()..];
                redacted = true;
            }
            _ => {
                out.push_str(&rest[..i + BEGIN.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, redacted)
}

/// The content of `rel`; private keys are refused, inline keys redacted.
pub fn get(env: &Env, rel: &str) -> Result<(Vec<u8>, bool), NodeConfigError> {
    Kind::of(rel)?;
    let path = env.dir.join(rel);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NodeConfigError::NotFound(rel.into()))
        }
        Err(e) => return Err(io(format!("cannot read {rel}"))(e)),
    };
    if rel.ends_with(".key") || (!rel.ends_with(".toml") && has_private_key(&data)) {
        return Err(NodeConfigError::KeyFile(rel.into()));
    }
    match std::str::from_utf8(&data) {
        Ok(text) => {
            let (text, redacted) = redact(text);
            Ok((text.into_bytes(), redacted))
        }
        Err(_) => Ok((data, false)),
    }
}

/// Validates `files` and `remove` together, then writes and removes. Returns (written,
/// removed) relative paths.
pub fn put(
    env: &Env,
    files: Vec<(String, Vec<u8>)>,
    remove: Vec<String>,
) -> Result<(Vec<String>, Vec<String>), NodeConfigError> {
    let mut changes = Vec::new();
    for (rel, data) in files {
        let kind = Kind::of(&rel)?;
        if data.len() > MAX_FILE {
            return Err(NodeConfigError::Invalid {
                path: rel,
                message: format!("larger than {MAX_FILE} bytes"),
            });
        }
        changes.push(validate::Change {
            rel,
            kind,
            data: Some(data),
        });
    }
    for rel in remove {
        let kind = Kind::of(&rel)?;
        if !env.dir.join(&rel).exists() {
            return Err(NodeConfigError::NotFound(rel));
        }
        changes.push(validate::Change {
            rel,
            kind,
            data: None,
        });
    }
    validate::all(env, &changes)?;
    let (mut written, mut removed) = (Vec::new(), Vec::new());
    for c in changes {
        let path = env.dir.join(&c.rel);
        match c.data {
            Some(data) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io(format!("cannot create the directory of {}", c.rel)))?;
                    if c.kind == Kind::Credential {
                        let _ = std::fs::set_permissions(
                            parent,
                            std::fs::Permissions::from_mode(0o700),
                        );
                    }
                }
                crate::atomic::write(&path, &data, c.kind.mode(&c.rel))
                    .map_err(io(format!("cannot write {}", c.rel)))?;
                written.push(c.rel);
            }
            None => {
                crate::atomic::remove(&path).map_err(io(format!("cannot remove {}", c.rel)))?;
                removed.push(c.rel);
            }
        }
    }
    Ok((written, removed))
}

#[cfg(test)]
mod tests;
