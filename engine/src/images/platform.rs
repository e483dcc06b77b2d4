//! Platform selection in an index, with containerd's `platforms.Only` semantics: a wanted
//! platform also accepts the older variants it can run (amd64/v3 runs v2 and v1 images; and
//! amd64 runs 386; arm64 runs arm/v8…v5), preferring the closest.

use std::fmt;

use super::error::{Error, Result};

/// A platform: `os/architecture[/variant]`, normalised (`x86_64` → `amd64`, `aarch64` →
/// `arm64`, `amd64/v1` → `amd64`, `arm64/v8` → `arm64`, `arm` → `arm/v7`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Default for Platform {
    /// linux/amd64: what berth's images run on.
    fn default() -> Self {
        Self::new("linux", "amd64", None)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch[/variant]`.
    fn from_str(input: &str) -> Result<Self> {
        let parts: Vec<&str> = input.split('/').collect();
        let bad = || Error::InvalidPlatform {
            input: input.to_owned(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Self::new(os, arch, None)),
            [os, arch, variant] => Ok(Self::new(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }
}

impl Platform {
    /// A normalised platform.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let mut variant = variant.map(str::to_ascii_lowercase);
        let architecture = match architecture.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" => "amd64".to_owned(),
            "aarch64" => "arm64".to_owned(),
            "i386" | "i686" => "386".to_owned(),
            "armhf" => {
                variant = Some("v7".to_owned());
                "arm".to_owned()
            }
            "armel" => {
                variant = Some("v6".to_owned());
                "arm".to_owned()
            }
            other => other.to_owned(),
        };
        match (architecture.as_str(), variant.as_deref()) {
            ("amd64", Some("v1")) | ("arm64", Some("v8")) => variant = None,
            ("arm", None) => variant = Some("v7".to_owned()),
            _ => {}
        }
        Self {
            os,
            architecture,
            variant,
        }
    }

    /// From an OCI descriptor's platform.
    pub fn from_oci(p: &oci_spec::image::Platform) -> Self {
        Self::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        )
    }

    /// The platforms this one runs, best first (containerd's `platformVector`).
    fn accepted(&self) -> Vec<Platform> {
        let mut out = vec![self.clone()];
        let level = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.parse::<u32>().ok())
        };
        let with = |arch: &str, variant: Option<String>| Platform {
            os: self.os.clone(),
            architecture: arch.to_owned(),
            variant,
        };
        match self.architecture.as_str() {
            "amd64" => {
                if let Some(n) = level(&self.variant) {
                    for v in (2..n).rev() {
                        out.push(with("amd64", Some(format!("v{v}"))));
                    }
                    out.push(with("amd64", None));
                }
                out.push(with("386", None));
            }
            "arm64" => {
                for v in (5..=8).rev() {
                    out.push(with("arm", Some(format!("v{v}"))));
                }
            }
            "arm" => {
                if let Some(n) = level(&self.variant) {
                    for v in (5..n).rev() {
                        out.push(with("arm", Some(format!("v{v}"))));
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// How well `candidate` fits: `Some(0)` is an exact match, higher is a fallback, `None`
    /// does not run here.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        self.accepted().iter().position(|p| p == candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p: Platform = "linux/x86_64".parse().unwrap();
        assert_eq!(p, Platform::default());
        assert_eq!("linux/amd64/v1".parse::<Platform>().unwrap(), p);
        assert_eq!(
            "linux/aarch64/v8".parse::<Platform>().unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            "linux/arm".parse::<Platform>().unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            let err = bad.parse::<Platform>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn ranks_like_containerd_only() {
        let amd64 = Platform::default();
        assert_eq!(amd64.rank(&"linux/amd64".parse().unwrap()), Some(0));
        assert_eq!(amd64.rank(&"linux/386".parse().unwrap()), Some(1));
        assert_eq!(amd64.rank(&"linux/amd64/v2".parse().unwrap()), None);
        assert_eq!(amd64.rank(&"linux/arm64".parse().unwrap()), None);
        assert_eq!(amd64.rank(&"windows/amd64".parse().unwrap()), None);
        let v3: Platform = "linux/amd64/v3".parse().unwrap();
        assert_eq!(v3.rank(&"linux/amd64/v2".parse().unwrap()), Some(1));
        assert_eq!(v3.rank(&"linux/amd64".parse().unwrap()), Some(2));
        let arm64: Platform = "linux/arm64".parse().unwrap();
        assert_eq!(arm64.rank(&"linux/arm/v7".parse().unwrap()), Some(2));
    }
}
