//! The ttrpc metadata keys that carry a request's namespace and lease, and the one rule every
//! service (and the remote API) reads them by.
//!
//! A request names its namespace in `berth-namespace`, or in containerd's
//! `containerd-namespace-ttrpc` so that containerd-style clients work unchanged; the first
//! key present wins, and a request naming none is in [`DEFAULT_NAMESPACE`]. The lease of a
//! content write or a pull comes from `berth-lease` or containerd's `containerd-lease`.
//! Before this rule lived here, the snapshots service read only `berth-namespace`, so a
//! containerd-style client landed in different namespaces depending on the service.

use std::collections::HashMap;

/// Metadata keys carrying the namespace, in order of preference.
pub const NAMESPACE_KEYS: &[&str] = &["berth-namespace", "containerd-namespace-ttrpc"];
/// The key berth's own clients send.
pub const NAMESPACE_KEY: &str = NAMESPACE_KEYS[0];
/// Metadata keys carrying a lease id, in order of preference.
pub const LEASE_KEYS: &[&str] = &["berth-lease", "containerd-lease"];
/// The namespace of requests that name none (containerd's too).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace a request's metadata names (not yet validated: the engine checks it is an
/// identifier), or [`DEFAULT_NAMESPACE`].
pub fn namespace(metadata: &HashMap<String, Vec<String>>) -> String {
    NAMESPACE_KEYS
        .iter()
        .find_map(|k| metadata.get(*k).and_then(|v| v.first()))
        .cloned()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
}

/// The lease a request's metadata names, if any (an empty value is none).
pub fn lease(metadata: &HashMap<String, Vec<String>>) -> Option<String> {
    LEASE_KEYS
        .iter()
        .find_map(|k| metadata.get(*k).and_then(|v| v.first()))
        .filter(|l| !l.is_empty())
        .cloned()
}

/// A client context carrying `namespace` (berth's key) and a timeout.
pub fn context(namespace: &str, timeout: std::time::Duration) -> ttrpc::context::Context {
    let mut ctx = ttrpc::context::with_timeout(timeout.as_nanos().min(i64::MAX as u128) as i64);
    ctx.add(NAMESPACE_KEY.to_string(), namespace.to_string());
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            m.entry(k.to_string()).or_default().push(v.to_string());
        }
        m
    }

    #[test]
    fn berths_key_wins_then_containerds_then_the_default() {
        assert_eq!(namespace(&md(&[])), "default");
        assert_eq!(
            namespace(&md(&[("containerd-namespace-ttrpc", "k8s.io")])),
            "k8s.io"
        );
        assert_eq!(
            namespace(&md(&[
                ("containerd-namespace-ttrpc", "k8s.io"),
                ("berth-namespace", "edge")
            ])),
            "edge"
        );
        assert_eq!(lease(&md(&[("containerd-lease", "l1")])), Some("l1".into()));
        assert_eq!(lease(&md(&[("berth-lease", "")])), None);
    }
}
