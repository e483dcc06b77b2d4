//! Sizes as people write them: init's `[*.resources]` (`memory_min = "64M"`), berthd's boot
//! containers (`memory = "64M"`) and `berthctl run --memory 64M` all read them with this one
//! grammar.
//!
//! ```text
//! size  = number [unit]          blanks around the number and the unit are ignored
//! unit  = "B" | prefix ["i"] ["B"]      case-insensitive: 64M, 64m, 64MB, 64Mi, 64MiB
//! prefix = "K" | "M" | "G" | "T"        always binary: K = 1024
//! limit = size | "max"                  where a limit may be absent (cgroup's `max`)
//! ```
//!
//! Why this grammar: it accepts every size berth's configs, docs and tests have ever used —
//! init's (`"64M"`, `"512MiB"`, `"1T"`, `134217728`), the engine's and berthctl's (`32M`,
//! `1g`, `4096`, `10b`) and Kubernetes-style `1Gi` — and it reads them the way the cgroup
//! files and Docker's `--memory` (`units.RAMInBytes`) do: every multiple binary, so
//! `--memory 32M` writes `memory.max = 33554432` as documented. No fractions (`1.5G`): no
//! config uses them, and a byte count is exact. Whether zero is acceptable is the caller's
//! rule (`memory.min = 0` is fine, a memory limit of 0 is not).

/// A size that does not follow the grammar; the message quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not a number followed by an optional unit.
    #[error("invalid size {0:?}: expected bytes, or a number with a K, M, G or T suffix")]
    Syntax(String),
    /// A number with a unit this grammar does not know (`12Q`).
    #[error("invalid size {text:?}: expected bytes, or a number with a K, M, G or T suffix")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// More than 2^64 - 1 bytes.
    #[error("invalid size {0:?}: too large")]
    TooLarge(String),
}

/// Parses a size in bytes (see the module documentation for the grammar).
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits_end);
    if number.is_empty() {
        return Err(SizeError::Syntax(text.to_string()));
    }
    let unit = unit.trim_start();
    let shift = unit_shift(unit).ok_or_else(|| SizeError::UnknownUnit {
        text: text.to_string(),
        unit: unit.to_string(),
    })?;
    let number: u64 = number
        .parse()
        .map_err(|_| SizeError::TooLarge(text.to_string()))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::TooLarge(text.to_string()))
}

/// Parses a limit: `max` (no limit, `None`) or a size.
pub fn parse_limit(text: &str) -> Result<Option<u64>, SizeError> {
    if text.trim() == "max" {
        return Ok(None);
    }
    parse_size(text).map(Some)
}

/// The power of two a unit stands for; `None` for an unknown unit.
fn unit_shift(unit: &str) -> Option<u32> {
    let upper = unit.to_ascii_uppercase();
    if upper.is_empty() || upper == "B" {
        return Some(0);
    }
    let mut chars = upper.chars();
    let shift = match chars.next()? {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    match chars.as_str() {
        "" | "I" | "B" | "IB" => Some(shift),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling berth accepts (or refuses), with its value. The first rows are the
    /// sizes found in configs/, docs/ and the tests of init, the engine and berthctl.
    #[test]
    fn the_size_grammar() {
        const K: u64 = 1 << 10;
        const M: u64 = 1 << 20;
        const G: u64 = 1 << 30;
        const T: u64 = 1 << 40;
        let ok: &[(&str, u64)] = &[
            // configs/init.toml, docs/init-services.md, qemu-tests/tests/services.rs
            ("64M", 64 * M),
            ("128M", 128 * M),
            ("32M", 32 * M),
            ("1G", G),
            // init's unit tests
            ("1048576", M),
            ("64K", 64 * K),
            ("512MiB", 512 * M),
            ("2g", 2 * G),
            ("1T", T),
            ("10B", 10),
            // engine boot containers and berthctl --memory
            ("1g", G),
            ("4096", 4096),
            ("512K", 512 * K),
            ("10b", 10),
            // Kubernetes-style and other case/space variants
            ("1Gi", G),
            ("1gib", G),
            ("1GIB", G),
            ("64MB", 64 * M),
            ("64mb", 64 * M),
            ("8Ki", 8 * K),
            ("  64M  ", 64 * M),
            ("64 M", 64 * M),
            ("0", 0),
            ("0M", 0),
            ("16777215T", 16_777_215 * T),
        ];
        for &(text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        let syntax = ["", "  ", "M", "-1", "+1", "x64M", "max"];
        for text in syntax {
            assert_eq!(
                parse_size(text),
                Err(SizeError::Syntax(text.into())),
                "{text:?}"
            );
        }
        let unknown = [
            ("12Q", "Q"),
            ("1P", "P"),
            ("1iB", "iB"),
            ("1Bi", "Bi"),
            ("1KBB", "KBB"),
            ("1MiBs", "MiBs"),
            ("1 2", "2"),
            ("64M 1", "M 1"),
            ("1kk", "kk"),
            ("1.5G", ".5G"),
        ];
        for (text, unit) in unknown {
            assert_eq!(
                parse_size(text),
                Err(SizeError::UnknownUnit {
                    text: text.into(),
                    unit: unit.into()
                }),
                "{text:?}"
            );
        }
        for text in ["99999999999T", "16777216T", "18446744073709551616"] {
            assert_eq!(
                parse_size(text),
                Err(SizeError::TooLarge(text.into())),
                "{text:?}"
            );
        }
        // The messages init reports with file, line and key.
        assert_eq!(
            parse_size("12Q").unwrap_err().to_string(),
            "invalid size \"12Q\": expected bytes, or a number with a K, M, G or T suffix"
        );
        assert_eq!(
            parse_size("99999999999T").unwrap_err().to_string(),
            "invalid size \"99999999999T\": too large"
        );
        // Limits: `max` or a size.
        assert_eq!(parse_limit("max"), Ok(None));
        assert_eq!(parse_limit(" max "), Ok(None));
        assert_eq!(parse_limit("1G"), Ok(Some(G)));
        assert!(parse_limit("MAX").is_err());
        assert!(parse_limit("lots").is_err());
    }
}
