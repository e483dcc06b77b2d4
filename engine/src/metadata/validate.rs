//! Validation of names and labels, with containerd's rules so that names move between
//! containerd and berth unchanged.
//!
//! Identifiers (namespaces, containers, leases, snapshotters) follow containerd's
//! `pkg/identifiers`: 1 to 76 characters, `[A-Za-z0-9]+` groups joined by single `.`, `_` or
//! `-`. Such names are safe as path components, which is why they are used for namespaces.
//! Labels follow containerd's `pkg/labels`: key and value together at most 4096 bytes.

use std::collections::BTreeMap;

use super::{Error, Result};

/// Longest identifier (containerd's `maxLength`).
pub const MAX_IDENTIFIER: usize = 76;
/// Largest key + value of one label, in bytes (containerd's `maxSize`).
pub const MAX_LABEL: usize = 4096;

/// Checks an identifier; `kind` names what it is ("namespace", "lease", …) in the error.
pub fn identifier(kind: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{kind} name must not be empty"
        )));
    }
    if s.len() > MAX_IDENTIFIER {
        return Err(Error::InvalidArgument(format!(
            "{kind} name {s:?} is longer than {MAX_IDENTIFIER} characters"
        )));
    }
    let sep = |c: u8| matches!(c, b'.' | b'_' | b'-');
    let bytes = s.as_bytes();
    let ok = bytes.iter().all(|&c| c.is_ascii_alphanumeric() || sep(c))
        && !sep(bytes[0])
        && !sep(bytes[bytes.len() - 1])
        && !bytes.windows(2).any(|w| sep(w[0]) && sep(w[1]));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "{kind} name {s:?} is invalid: it must be letters and digits, optionally joined \
             by single '.', '_' or '-' (^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$)"
        )));
    }
    Ok(())
}

/// Checks a free-form name (image names, snapshot keys): non-empty, no NUL.
pub fn name(kind: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} must not be empty")));
    }
    if s.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{kind} {s:?} must not contain a NUL character"
        )));
    }
    Ok(())
}

/// Checks every label.
pub fn labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(Error::InvalidArgument("label key must not be empty".into()));
        }
        if k.len() + v.len() > MAX_LABEL {
            return Err(Error::InvalidArgument(format!(
                "label {k:?}: key and value are {} bytes, more than the maximum {MAX_LABEL}",
                k.len() + v.len()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_containerd() {
        for ok in ["default", "k8s.io", "a", "A-1_b.c", &"x".repeat(76)] {
            identifier("namespace", ok).unwrap();
        }
        for (bad, want) in [
            ("", "must not be empty"),
            ("-a", "is invalid"),
            ("a-", "is invalid"),
            ("a..b", "is invalid"),
            ("a/b", "is invalid"),
            ("ünï", "is invalid"),
            (&"x".repeat(77), "longer than 76"),
        ] {
            let e = identifier("namespace", bad).unwrap_err();
            assert!(e.to_string().contains(want), "{bad}: {e}");
            assert!(e.to_string().starts_with("namespace name"), "{e}");
            assert_eq!(
                berth_api::errdefs::Classify::kind(&e),
                berth_api::errdefs::Kind::InvalidArgument
            );
        }
    }

    #[test]
    fn labels_are_bounded() {
        let mut l = BTreeMap::new();
        l.insert("k".to_string(), "v".repeat(4095));
        labels(&l).unwrap();
        l.insert("k".to_string(), "v".repeat(4096));
        let e = labels(&l).unwrap_err().to_string();
        assert!(e.contains("4097 bytes"), "{e}");
    }
}
