//! The build timestamp (<https://reproducible-builds.org/specs/source-date-epoch/>).
//!
//! Order: the `SOURCE_DATE_EPOCH` environment variable; else the committer time of `HEAD` in
//! the git repository holding the image definition; else 0 (1970-01-01). Every mtime in the
//! artefacts is this value, so it is the only clock that reaches them.

use std::path::Path;
use std::process::Command;

/// `SOURCE_DATE_EPOCH` is set but not a number.
#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    /// Not a non-negative integer that fits the cpio and erofs 32-bit time fields.
    #[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds between 0 and 4294967295")]
    Invalid {
        /// The value found.
        value: String,
    },
}

/// Where the timestamp came from, recorded in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpochSource {
    /// The `SOURCE_DATE_EPOCH` environment variable.
    Environment,
    /// The last git commit.
    GitCommit,
    /// Nothing was available: 0.
    Zero,
}

/// Parses a `SOURCE_DATE_EPOCH` value.
pub fn parse(value: &str) -> Result<u32, EpochError> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| EpochError::Invalid {
            value: value.to_string(),
        })
}

/// Resolves the build timestamp; `near` is a path inside the source checkout (the image
/// definition) used to find the git repository.
pub fn resolve(near: &Path) -> Result<(u32, EpochSource), EpochError> {
    if let Some(value) = std::env::var_os("SOURCE_DATE_EPOCH") {
        return Ok((parse(&value.to_string_lossy())?, EpochSource::Environment));
    }
    let dir = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let git = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        .output();
    if let Ok(out) = git {
        if out.status.success() {
            if let Ok(secs) = parse(&String::from_utf8_lossy(&out.stdout)) {
                return Ok((secs, EpochSource::GitCommit));
            }
        }
    }
    Ok((0, EpochSource::Zero))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_seconds() {
        assert_eq!(parse("1700000000\n").unwrap(), 1_700_000_000);
        assert!(parse("-1").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("99999999999").is_err());
    }
}
