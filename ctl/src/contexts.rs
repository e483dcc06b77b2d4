//! The contexts file (like talosconfig or kubeconfig): named sets of nodes and the
//! credentials to reach them, so `berthctl --context edge images ls` needs no other flag.
//!
//! `$BERTHCONFIG`, else `$XDG_CONFIG_HOME/berth/config.toml`, else
//! `~/.config/berth/config.toml`:
//!
//! ```toml
//! context = "edge"                       # the current context (berthctl config use-context)
//!
//! [contexts.edge]
//! nodes = ["edge-7=10.0.0.7", "edge-8=10.0.0.8:7443"]   # [NAME=]HOST[:PORT]; the first is the default
//! ca = "edge/ca.pem"                     # paths relative to this file, or PEM text
//! cert = "edge/otto.pem"
//! key = "edge/otto.key"
//! ```
//!
//! Each node entry names the node its certificate must be for (NAME, else HOST): a context
//! pins server identity per node, so node-b's certificate presented on node-a's address is
//! refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The environment variable naming the file.
pub const ENV: &str = "BERTHCONFIG";

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// The current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// One context.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Nodes, `[NAME=]HOST[:PORT]`; the first is the one a single-node verb talks to.
    pub nodes: Vec<String>,
    /// The fleet CA certificate: a path (relative to the file) or PEM.
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// Its key.
    pub key: String,
}

/// Where the file is: `$BERTHCONFIG`, `$XDG_CONFIG_HOME/berth/config.toml` or
/// `~/.config/berth/config.toml` (None without HOME).
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Some(Path::new(&x).join("berth/config.toml"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".config/berth/config.toml"))
}

impl File {
    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<File, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Error::Usage(format!("{}: {}", path.display(), e.message().trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(Error::io(format!("cannot read {}", path.display()))(e)),
        }
    }

    /// Writes `path` (0600: it names key files, or holds keys), creating its directory.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = toml::to_string(self)
            .map_err(|e| Error::Usage(format!("cannot write the contexts file: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("cannot create {}", dir.display())))?;
        }
        let tmp = path.with_extension("toml.tmp");
        let what = format!("cannot write {}", path.display());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(Error::io(what.clone()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(Error::io(what))
    }

    /// The context called `name`.
    pub fn get(&self, name: &str, path: &Path) -> Result<&Context, Error> {
        self.contexts.get(name).ok_or_else(|| {
            Error::Usage(format!(
                "no context {name:?} in {} (berthctl config contexts lists them)",
                path.display()
            ))
        })
    }
}

/// A credential of a context: PEM text as it is, else a path resolved against `base`
/// (the file's directory; `~/` is the home directory).
pub fn resolve_credential(value: &str, base: &Path) -> Credential {
    if value.trim_start().starts_with("-----BEGIN ") {
        return Credential::Pem(value.to_string());
    }
    if let (Some(rest), Some(home)) = (value.strip_prefix("~/"), std::env::var_os("HOME")) {
        return Credential::File(Path::new(&home).join(rest));
    }
    Credential::File(base.join(value))
}

/// Where a credential comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A file.
    File(PathBuf),
    /// The PEM text.
    Pem(String),
}

impl Credential {
    /// The PEM text; `what` names it in errors.
    pub fn read(&self, what: &str) -> Result<String, Error> {
        match self {
            Credential::Pem(text) => Ok(text.clone()),
            Credential::File(p) => std::fs::read_to_string(p)
                .map_err(Error::io(format!("cannot read the {what} {}", p.display()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_round_trips_and_credentials_resolve_against_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.toml");
        assert_eq!(File::load(&path).unwrap(), File::default());
        let mut f = File::default();
        f.contexts.insert(
            "lab".into(),
            Context {
                nodes: vec!["node-a=127.0.0.1:17443".into()],
                ca: "lab/ca.pem".into(),
                cert: "/abs/admin.pem".into(),
                key: "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n".into(),
            },
        );
        f.context = Some("lab".into());
        f.save(&path).unwrap();
        let back = File::load(&path).unwrap();
        assert_eq!(back, f);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let base = path.parent().unwrap();
        let c = back.get("lab", &path).unwrap();
        assert_eq!(
            resolve_credential(&c.ca, base),
            Credential::File(base.join("lab/ca.pem"))
        );
        assert_eq!(
            resolve_credential(&c.cert, base),
            Credential::File("/abs/admin.pem".into())
        );
        assert!(matches!(
            resolve_credential(&c.key, base),
            Credential::Pem(_)
        ));
        assert!(back.get("nope", &path).is_err());
        std::fs::write(&path, "contexts = 1\n").unwrap();
        assert!(File::load(&path).is_err());
    }
}
