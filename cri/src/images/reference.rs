//! Image references the way kubelet writes them, normalised like Docker (and berthd's pull,
//! whose record names they must match): `busybox` is `docker.io/library/busybox:latest`,
//! `repo@sha256:…` keeps no tag.
//!
//! Phase 2: berthd's parser (`engine/src/remotes/hosts.rs`, `parse_reference` and
//! `ImageRef`) and this one should become one, in berth-api; until then this copy follows
//! the same rules (first component is a registry only with `.`/`:` or as `localhost`,
//! `index.docker.io` is `docker.io`, one-component Docker Hub repositories get `library/`).

/// Docker Hub's registry name.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    /// The tag (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`; `None` when it is no image reference.
    pub fn parse(s: &str) -> Option<Reference> {
        if s.is_empty() || s.contains(char::is_whitespace) {
            return None;
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let (algo, hex) = d.split_once(':')?;
                if algo.is_empty() || hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    return None;
                }
                (r, Some(d.to_owned()))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                let ok = !t.is_empty()
                    && t.len() <= 128
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
                if !ok {
                    return None;
                }
                (&rest[..last_slash + i], Some(t.to_owned()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), path.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return None;
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_owned())
        } else {
            tag
        };
        Some(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The record name berthd's pull gives it: `repo[:tag][@digest]`.
    pub fn name(&self) -> String {
        let mut s = self.repo();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }
}

/// Whether `s` is an image ID as the CRI uses it: `sha256:` and 64 hex digits (the
/// config's digest).
pub fn is_image_id(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalisation() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.name(), "docker.io/library/busybox:latest");
        let r = Reference::parse("gcr.io/k8s-staging-cri-tools/test-image-tag:test").unwrap();
        assert_eq!(r.name(), "gcr.io/k8s-staging-cri-tools/test-image-tag:test");
        assert_eq!(r.repo(), "gcr.io/k8s-staging-cri-tools/test-image-tag");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/x@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.name(), format!("localhost:5000/x@{d}"));
        assert_eq!(
            Reference::parse("index.docker.io/me/app:1").unwrap().name(),
            "docker.io/me/app:1"
        );
        assert!(Reference::parse("Upper/case").is_none());
        assert!(Reference::parse("a b").is_none());
        assert!(is_image_id(&d));
        assert!(!is_image_id("sha256:abc"));
    }
}
