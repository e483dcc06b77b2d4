//! Snapshots as one namespace sees them: the core of the Snapshots service (containerd's
//! `plugins/services/snapshots`), over a backend [`Snapshotter`] that knows no namespaces.
//!
//! The key `k` of namespace `ns` is the backend key `ns/k` (parents likewise), and a namespace
//! sees only its own snapshots, with the prefix removed — in records and in error messages.
//! Namespace names are identifiers (`crate::metadata::validate::identifier`: no `/`), so the
//! mapping is unambiguous; unpack ([`crate::unpack::backend_name`]) and containers use the
//! same backend keys.
//!
//! The calls are blocking (directory walks, copies, `zfs`): callers run them on a blocking
//! thread.

use std::sync::Arc;

use berth_api::errdefs::{Classify, Kind};

use super::filter::Filter;
use super::{Error, Info, Labels, Mount, Snapshotter, Usage};

/// A snapshotter error as seen from a namespace: its message quotes keys without the
/// namespace prefix.
///
/// It carries the error's own line only, not its causes (no `source`): the Snapshots service
/// has always answered with that line, and clients match on it.
#[derive(Debug)]
pub struct NamespacedError {
    ns: String,
    error: Box<Error>,
}

impl NamespacedError {
    /// The backend's error.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl std::fmt::Display for NamespacedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefixed = format!("\"{}/", self.ns);
        f.write_str(&self.error.to_string().replace(&prefixed, "\""))
    }
}

impl std::error::Error for NamespacedError {}

impl Classify for NamespacedError {
    fn kind(&self) -> Kind {
        self.error.kind()
    }
}

/// Result of a namespaced call.
pub type Result<T> = std::result::Result<T, NamespacedError>;

/// One backend snapshotter seen from namespace `ns`.
pub struct Namespaced {
    sn: Arc<dyn Snapshotter>,
    ns: String,
}

/// Maps a namespace-relative key onto the backend (`""` stays `""`: no parent).
fn backend(ns: &str, key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{ns}/{key}")
    }
}

fn strip<'a>(ns: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(ns)?.strip_prefix('/')
}

impl Namespaced {
    /// `sn` as namespace `ns` (a validated identifier) sees it.
    pub fn new(sn: Arc<dyn Snapshotter>, ns: &str) -> Self {
        Self {
            sn,
            ns: ns.to_owned(),
        }
    }

    fn key(&self, key: &str) -> String {
        backend(&self.ns, key)
    }

    fn err(&self, error: Error) -> NamespacedError {
        NamespacedError {
            ns: self.ns.clone(),
            error: Box::new(error),
        }
    }

    /// A backend record with the namespace prefix removed from its name and parent.
    fn info(&self, mut i: Info) -> Info {
        if let Some(n) = strip(&self.ns, &i.name) {
            i.name = n.to_string();
        }
        if let Some(p) = strip(&self.ns, &i.parent) {
            i.parent = p.to_string();
        }
        i
    }

    /// [`Snapshotter::prepare`].
    pub fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.sn
            .prepare(&self.key(key), &self.key(parent), labels)
            .map_err(|e| self.err(e))
    }

    /// [`Snapshotter::view`].
    pub fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.sn
            .view(&self.key(key), &self.key(parent), labels)
            .map_err(|e| self.err(e))
    }

    /// [`Snapshotter::mounts`].
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.sn.mounts(&self.key(key)).map_err(|e| self.err(e))
    }

    /// [`Snapshotter::commit`].
    pub fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.sn
            .commit(&self.key(name), &self.key(key), labels)
            .map_err(|e| self.err(e))
    }

    /// [`Snapshotter::remove`].
    pub fn remove(&self, key: &str) -> Result<()> {
        self.sn.remove(&self.key(key)).map_err(|e| self.err(e))
    }

    /// [`Snapshotter::stat`].
    pub fn stat(&self, key: &str) -> Result<Info> {
        self.sn
            .stat(&self.key(key))
            .map(|i| self.info(i))
            .map_err(|e| self.err(e))
    }

    /// [`Snapshotter::update`] of `info.name` (namespace-relative).
    pub fn update(&self, mut info: Info, fieldpaths: &[&str]) -> Result<Info> {
        info.name = self.key(&info.name);
        self.sn
            .update(&info, fieldpaths)
            .map(|i| self.info(i))
            .map_err(|e| self.err(e))
    }

    /// The namespace's snapshots that match `filter` (containerd's filter syntax, matched
    /// against the namespace-relative records).
    pub fn list(&self, filter: &Filter) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        self.sn
            .walk(&[], &mut |i| {
                if strip(&self.ns, &i.name).is_some() {
                    let i = self.info(i.clone());
                    if filter.matches(&i) {
                        out.push(i);
                    }
                }
                Ok(())
            })
            .map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// [`Snapshotter::usage`].
    pub fn usage(&self, key: &str) -> Result<Usage> {
        self.sn.usage(&self.key(key)).map_err(|e| self.err(e))
    }

    /// [`Snapshotter::cleanup`] (of the whole backend: leftovers belong to no namespace).
    pub fn cleanup(&self) -> Result<()> {
        self.sn.cleanup().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_onto_the_backend_and_back() {
        assert_eq!(backend("ns", "k/with/slash"), "ns/k/with/slash");
        assert_eq!(backend("ns", ""), "");
        assert_eq!(strip("ns", "ns/k"), Some("k"));
        assert_eq!(strip("ns", "nsx/k"), None);
        let e = NamespacedError {
            ns: "ns".into(),
            error: Box::new(Error::NotFound { key: "ns/k".into() }),
        };
        assert_eq!(e.to_string(), "snapshot \"k\" not found");
        assert_eq!(e.kind(), Kind::NotFound);
    }
}
