//! Per-service cgroup reservations and limits from `init.toml` (`[berthd.resources]`,
//! `[service.resources]`), validated while the file is parsed so a bad value is reported with
//! its file, line and key like every other key.
//!
//! Each value maps to one cgroup v2 interface file of the service's cgroup
//! (`Documentation/admin-guide/cgroup-v2.rst`): `memory.min`, `memory.low`, `memory.max`,
//! `cpu.weight`, `cpu.max`, `pids.max`.

use std::fmt;

use berth_layout::size::{parse_limit, parse_size};
use serde::{Deserialize, Serialize};

/// A value as written in TOML: an integer or a string. Sizes and limits accept both.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Raw {
    Int(i64),
    Str(String),
}

/// A size in bytes: an integer, or a string in berth's one size grammar
/// ([`berth_layout::size`]: `"512M"` = 512 MiB, `"512MiB"`, `"1Gi"`; binary multiples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Raw", into = "u64")]
pub struct Size(pub u64);

impl From<Size> for u64 {
    fn from(size: Size) -> u64 {
        size.0
    }
}

impl TryFrom<Raw> for Size {
    type Error = String;
    fn try_from(raw: Raw) -> Result<Self, String> {
        match raw {
            Raw::Int(n) => u64::try_from(n)
                .map(Size)
                .map_err(|_| format!("invalid size {n}: must not be negative")),
            Raw::Str(s) => parse_size(&s).map(Size).map_err(|e| e.to_string()),
        }
    }
}

/// A limit that may be absent: `"max"` (no limit) or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Max<T> {
    /// No limit (`max` in the cgroup file).
    Max,
    /// This limit.
    Value(T),
}

impl<T: fmt::Display> fmt::Display for Max<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Max => f.write_str("max"),
            Self::Value(v) => v.fmt(f),
        }
    }
}

/// `memory.max`: a [`Size`] or `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Raw", into = "String")]
pub struct MemoryMax(pub Max<u64>);

impl TryFrom<Raw> for MemoryMax {
    type Error = String;
    fn try_from(raw: Raw) -> Result<Self, String> {
        match raw {
            Raw::Str(s) => match parse_limit(&s).map_err(|e| e.to_string())? {
                None => Ok(Self(Max::Max)),
                Some(bytes) => Ok(Self(Max::Value(bytes))),
            },
            other => Size::try_from(other).map(|s| Self(Max::Value(s.0))),
        }
    }
}

impl From<MemoryMax> for String {
    fn from(m: MemoryMax) -> String {
        m.0.to_string()
    }
}

/// `pids.max`: a positive integer or `"max"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "Raw", into = "String")]
pub struct PidsMax(pub Max<u64>);

impl TryFrom<Raw> for PidsMax {
    type Error = String;
    fn try_from(raw: Raw) -> Result<Self, String> {
        match raw {
            Raw::Str(s) if s.trim() == "max" => Ok(Self(Max::Max)),
            Raw::Int(n) if n > 0 => Ok(Self(Max::Value(n as u64))),
            Raw::Int(n) => Err(format!(
                "invalid pids limit {n}: must be at least 1, or \"max\""
            )),
            Raw::Str(s) => Err(format!(
                "invalid pids limit {s:?}: expected a number or \"max\""
            )),
        }
    }
}

impl From<PidsMax> for String {
    fn from(m: PidsMax) -> String {
        m.0.to_string()
    }
}

/// `cpu.weight`: 1 to 10000 (the kernel's range; 100 is everybody's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct CpuWeight(pub u32);

impl TryFrom<i64> for CpuWeight {
    type Error = String;
    fn try_from(n: i64) -> Result<Self, String> {
        if (1..=10_000).contains(&n) {
            Ok(Self(n as u32))
        } else {
            Err(format!(
                "invalid cpu weight {n}: must be 1 to 10000 (default 100)"
            ))
        }
    }
}

impl From<CpuWeight> for i64 {
    fn from(w: CpuWeight) -> i64 {
        i64::from(w.0)
    }
}

/// `cpu.max`: `"<quota µs> <period µs>"`, `"<quota µs>"` (period 100000) or `"max"`
/// (optionally `"max <period>"`), exactly as the kernel file reads. `"50000 100000"` is half a
/// CPU, `"200000 100000"` two CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct CpuMax {
    /// Run time allowed per period, in µs; `Max` for no limit.
    pub quota_us: Max<u64>,
    /// The period in µs.
    pub period_us: u64,
}

/// The kernel's default `cpu.max` period.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

impl TryFrom<String> for CpuMax {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| format!("invalid cpu limit {text:?}: {why}");
        let mut words = text.split_whitespace();
        let quota = words
            .next()
            .ok_or_else(|| bad("expected \"<quota µs> [<period µs>]\" or \"max\""))?;
        let quota_us = if quota == "max" {
            Max::Max
        } else {
            let q: u64 = quota
                .parse()
                .map_err(|_| bad("the quota is not a number of µs or \"max\""))?;
            if q < 1000 {
                return Err(bad("the quota must be at least 1000 µs"));
            }
            Max::Value(q)
        };
        let period_us = match words.next() {
            None => DEFAULT_CPU_PERIOD_US,
            Some(p) => p
                .parse()
                .map_err(|_| bad("the period is not a number of µs"))?,
        };
        if !(1000..=1_000_000).contains(&period_us) {
            return Err(bad("the period must be 1000 to 1000000 µs"));
        }
        if words.next().is_some() {
            return Err(bad("more than two values"));
        }
        Ok(Self {
            quota_us,
            period_us,
        })
    }
}

impl From<CpuMax> for String {
    fn from(c: CpuMax) -> String {
        format!("{} {}", c.quota_us, c.period_us)
    }
}

/// Reservations and limits of one service's cgroup. Every key is optional; an unset key leaves
/// the kernel's default (no reservation, no limit, weight 100).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    /// `memory.min`: memory that is never reclaimed from the service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_min: Option<Size>,
    /// `memory.low`: memory reclaimed from the service only when nothing else can be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_low: Option<Size>,
    /// `memory.max`: hard limit (the OOM killer acts inside the cgroup beyond it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<MemoryMax>,
    /// `cpu.weight`: share of CPU under contention, 1–10000 (default 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<CpuWeight>,
    /// `cpu.max`: bandwidth limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<CpuMax>,
    /// `pids.max`: most processes and threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<PidsMax>,
}

impl Resources {
    /// The cgroup interface files to write, in a safe order (reservations before the limit),
    /// each with the config key it came from and the value to write.
    pub fn files(&self) -> Vec<(&'static str, &'static str, String)> {
        let mut out = Vec::new();
        if let Some(v) = self.memory_min {
            out.push(("memory.min", "memory_min", v.0.to_string()));
        }
        if let Some(v) = self.memory_low {
            out.push(("memory.low", "memory_low", v.0.to_string()));
        }
        if let Some(v) = self.memory_max {
            out.push(("memory.max", "memory_max", v.0.to_string()));
        }
        if let Some(v) = self.cpu_weight {
            out.push(("cpu.weight", "cpu_weight", v.0.to_string()));
        }
        if let Some(v) = self.cpu_max {
            out.push(("cpu.max", "cpu_max", String::from(v)));
        }
        if let Some(v) = self.pids_max {
            out.push(("pids.max", "pids_max", v.0.to_string()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        resources: Resources,
    }

    fn parse(text: &str) -> Result<Resources, String> {
        toml::from_str::<Doc>(text)
            .map(|d| d.resources)
            .map_err(|e| e.message().to_string())
    }

    /// The grammar itself is tested in `berth_layout::size`; here: both TOML forms, `max`
    /// where a limit may be absent, and the message init reports.
    #[test]
    fn sizes() {
        let r = parse(
            "[resources]\nmemory_min = \"512MiB\"\nmemory_low = 1024\nmemory_max = \"1Gi\"\n",
        )
        .unwrap();
        assert_eq!(r.memory_min, Some(Size(512 << 20)));
        assert_eq!(r.memory_low, Some(Size(1024)));
        assert_eq!(r.memory_max, Some(MemoryMax(Max::Value(1 << 30))));
        assert!(parse("[resources]\nmemory_min = \"max\"\n").is_err());
        assert!(parse("[resources]\nmemory_min = -1\n")
            .unwrap_err()
            .contains("must not be negative"));
        assert!(parse("[resources]\nmemory_max = \"12Q\"\n")
            .unwrap_err()
            .contains(
                "invalid size \"12Q\": expected bytes, or a number with a K, M, G or T suffix"
            ));
    }

    #[test]
    fn full_table_maps_to_files_in_order() {
        let r = parse(
            "[resources]\nmemory_min = \"64M\"\nmemory_low = 134217728\nmemory_max = \"max\"\n\
             cpu_weight = 200\ncpu_max = \"50000 100000\"\npids_max = 512\n",
        )
        .unwrap();
        let files: Vec<(&str, String)> = r.files().into_iter().map(|(f, _, v)| (f, v)).collect();
        assert_eq!(
            files,
            [
                ("memory.min", "67108864".to_string()),
                ("memory.low", "134217728".into()),
                ("memory.max", "max".into()),
                ("cpu.weight", "200".into()),
                ("cpu.max", "50000 100000".into()),
                ("pids.max", "512".into()),
            ]
        );
        assert!(Resources::default().files().is_empty());
    }

    #[test]
    fn cpu_max_forms() {
        let c = |s: &str| CpuMax::try_from(s.to_string());
        assert_eq!(String::from(c("max").unwrap()), "max 100000");
        assert_eq!(String::from(c("20000").unwrap()), "20000 100000");
        assert_eq!(String::from(c("max 50000").unwrap()), "max 50000");
        assert!(c("500").unwrap_err().contains("at least 1000"));
        assert!(c("20000 10").unwrap_err().contains("period"));
        assert!(c("half").unwrap_err().contains("\"half\""));
        assert!(c("").is_err());
        assert!(c("1000 1000 1000").is_err());
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(parse("[resources]\ncpu_weight = 0\n")
            .unwrap_err()
            .contains("1 to 10000"));
        assert!(parse("[resources]\npids_max = 0\n")
            .unwrap_err()
            .contains("at least 1"));
        assert!(parse("[resources]\npids_max = \"lots\"\n")
            .unwrap_err()
            .contains("\"lots\""));
        assert!(parse("[resources]\nmemory_max = -5\n")
            .unwrap_err()
            .contains("negative"));
        assert!(parse("[resources]\nmemory_max = \"1X\"\n")
            .unwrap_err()
            .contains("\"1X\""));
        assert!(parse("[resources]\nmemroy_max = 1\n")
            .unwrap_err()
            .contains("unknown field `memroy_max`"));
    }

    #[test]
    fn round_trips_through_toml() {
        let r =
            parse("[resources]\nmemory_max = \"1G\"\ncpu_max = \"max\"\npids_max = \"max\"\ncpu_weight = 5\n").unwrap();
        let text = toml::to_string(&r).unwrap();
        let back: Resources = toml::from_str(&text).unwrap();
        assert_eq!(back, r);
    }
}
