//! Content digests (`sha256:<64 lowercase hex>`).
//!
//! Only sha256 is accepted: it is what OCI images use in practice, and accepting an algorithm
//! we cannot verify would let unverified bytes into the store.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a digest string was refused. Each variant names the bad input so a client can see
/// which of its values was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix at all.
    #[error("invalid digest {input:?}: expected the form sha256:<64 hex characters>")]
    MissingAlgorithm { input: String },
    /// A well-formed prefix naming an algorithm other than sha256.
    #[error("unsupported digest algorithm {algorithm:?} in {input:?}: only sha256 is supported")]
    UnsupportedAlgorithm { input: String, algorithm: String },
    /// The hex part has the wrong length.
    #[error("invalid digest {input:?}: sha256 needs 64 hex characters, got {len}")]
    BadLength { input: String, len: usize },
    /// The hex part holds something other than lowercase hex (OCI requires lowercase).
    #[error("invalid digest {input:?}: {found:?} is not a lowercase hex character")]
    BadCharacter { input: String, found: char },
}

/// A sha256 content digest, always valid once constructed.
///
/// Stored as the raw 32 bytes so comparisons and hashing are cheap; rendered as
/// `sha256:<hex>` (see [`Digest::encoded`] for the hex alone, used as the blob file name).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The only algorithm berth accepts.
    pub const ALGORITHM: &'static str = "sha256";

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// Wraps a finished sha256 hash.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex characters, without the algorithm: the blob's file name.
    pub fn encoded(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        self.0
            .iter()
            .flat_map(|b| {
                [
                    HEX[usize::from(b >> 4)] as char,
                    HEX[usize::from(b & 0xf)] as char,
                ]
            })
            .collect()
    }

    /// Parses the hex part alone (a blob file name).
    pub fn from_encoded(hex: &str) -> Result<Self, DigestError> {
        format!("{}:{hex}", Self::ALGORITHM).parse()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex)) = input.split_once(':') else {
            return Err(DigestError::MissingAlgorithm {
                input: input.to_owned(),
            });
        };
        if algorithm != Self::ALGORITHM {
            return Err(DigestError::UnsupportedAlgorithm {
                input: input.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        if let Some(found) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DigestError::BadCharacter {
                input: input.to_owned(),
                found,
            });
        }
        if hex.len() != 64 {
            return Err(DigestError::BadLength {
                input: input.to_owned(),
                len: hex.len(),
            });
        }
        // Only lowercase hex digits are left, so each byte maps to a nibble.
        let nibble = |c: u8| {
            if c.is_ascii_digit() {
                c - b'0'
            } else {
                c - b'a' + 10
            }
        };
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = (nibble(pair[0]) << 4) | nibble(pair[1]);
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", Self::ALGORITHM, self.encoded())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn round_trips_and_hashes() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::from_encoded(&d.encoded()).unwrap(), d);
    }

    #[test]
    fn refuses_bad_input_naming_it() {
        let cases = [
            ("e3b0", "expected the form"),
            ("sha512:abcd", "only sha256 is supported"),
            ("sha256:abcd", "got 4"),
            ("sha256:é", "'é'"),
            (
                &EMPTY.to_uppercase().replace("SHA256", "sha256"),
                "not a lowercase hex",
            ),
            (&EMPTY.replace('e', "g"), "'g'"),
        ];
        for (input, want) in cases {
            let err = input.parse::<Digest>().unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
            assert!(err.contains(input), "{input}: {err}");
        }
    }
}
