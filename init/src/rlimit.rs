//! `[rlimits]`: resource limits set on init before any service starts, so every service
//! (berthd, and through it the shims) inherits them.
//!
//! ```toml
//! [rlimits]
//! nofile = { soft = 1048576, hard = 1048576 }
//! core = { soft = 0, hard = "unlimited" }
//! ```
//! Names are those of `prlimit(1)` without the `RLIMIT_` prefix, lowercase. A value is a
//! number or `"unlimited"` (`"infinity"`). Like sysctl names, resource names are checked when
//! applied: an unknown name costs one error line naming it, the other limits still apply.

use std::collections::BTreeMap;
use std::fmt;

use nix::sys::resource::{setrlimit, Resource, RLIM_INFINITY};
use serde::{Deserialize, Serialize};

/// One bound: a number or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "LimitRepr", into = "LimitRepr")]
pub enum Limit {
    /// `"unlimited"` / `"infinity"` (`RLIM_INFINITY`).
    Unlimited,
    /// A number (bytes, files, processes … depending on the resource).
    Value(u64),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum LimitRepr {
    Int(i64),
    Str(String),
}

impl TryFrom<LimitRepr> for Limit {
    type Error = String;
    fn try_from(r: LimitRepr) -> Result<Self, String> {
        match r {
            LimitRepr::Int(n) if n >= 0 => Ok(Self::Value(n as u64)),
            LimitRepr::Int(n) => Err(format!("invalid limit {n}: must not be negative")),
            LimitRepr::Str(s) if s == "unlimited" || s == "infinity" => Ok(Self::Unlimited),
            LimitRepr::Str(s) => Err(format!(
                "invalid limit {s:?}: expected a number or \"unlimited\""
            )),
        }
    }
}

impl From<Limit> for LimitRepr {
    fn from(l: Limit) -> Self {
        match l {
            Limit::Unlimited => Self::Str("unlimited".into()),
            Limit::Value(n) => i64::try_from(n)
                .map(Self::Int)
                .unwrap_or_else(|_| Self::Str(n.to_string())),
        }
    }
}

impl Limit {
    fn raw(self) -> u64 {
        match self {
            Self::Unlimited => RLIM_INFINITY,
            Self::Value(n) => n,
        }
    }

    fn rank(self) -> u128 {
        match self {
            Self::Unlimited => u128::MAX,
            Self::Value(n) => u128::from(n),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unlimited => f.write_str("unlimited"),
            Self::Value(n) => n.fmt(f),
        }
    }
}

/// `{ soft = …, hard = … }`: both required, so nothing is left to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rlimit {
    /// The limit processes get (they may raise it up to `hard`).
    pub soft: Limit,
    /// The ceiling (only privileged processes raise it).
    pub hard: Limit,
}

/// The `[rlimits]` table: resource name → limits.
pub type Rlimits = BTreeMap<String, Rlimit>;

/// Why one limit was not set; each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    /// Not a resource name.
    #[error("rlimits.{0}: unknown resource (known: {known})", known = NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    UnknownName(String),
    /// `soft` above `hard`.
    #[error("rlimits.{key}: soft limit {soft} is above the hard limit {hard}")]
    SoftAboveHard {
        /// The resource name.
        key: String,
        /// Soft.
        soft: Limit,
        /// Hard.
        hard: Limit,
    },
    /// setrlimit(2) refused (EPERM: e.g. `nofile` above `fs.nr_open`).
    #[error("rlimits.{key}: cannot set soft {soft}, hard {hard}: {source}")]
    Set {
        /// The resource name.
        key: String,
        /// Soft.
        soft: Limit,
        /// Hard.
        hard: Limit,
        /// The cause.
        #[source]
        source: nix::Error,
    },
}

/// The resource names understood, as `prlimit(1)` spells them.
pub const NAMES: &[(&str, Resource)] = &[
    ("as", Resource::RLIMIT_AS),
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

/// The resource called `name`.
pub fn resource(name: &str) -> Option<Resource> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r)
}

/// Checks one entry without applying it.
pub fn validate(name: &str, limit: &Rlimit) -> Result<Resource, RlimitError> {
    let res = resource(name).ok_or_else(|| RlimitError::UnknownName(name.to_string()))?;
    if limit.soft.rank() > limit.hard.rank() {
        return Err(RlimitError::SoftAboveHard {
            key: name.to_string(),
            soft: limit.soft,
            hard: limit.hard,
        });
    }
    Ok(res)
}

/// Sets every limit on the calling process (init); returns the names set and the errors.
pub fn apply(limits: &Rlimits) -> (Vec<String>, Vec<RlimitError>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (name, limit) in limits {
        let result = validate(name, limit).and_then(|res| {
            setrlimit(res, limit.soft.raw(), limit.hard.raw()).map_err(|source| RlimitError::Set {
                key: name.clone(),
                soft: limit.soft,
                hard: limit.hard,
                source,
            })
        });
        match result {
            Ok(()) => ok.push(name.clone()),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        rlimits: Rlimits,
    }

    fn parse(text: &str) -> Result<Rlimits, String> {
        toml::from_str::<Doc>(text)
            .map(|d| d.rlimits)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn parses_numbers_and_unlimited() {
        let r = parse(
            "[rlimits]\nnofile = { soft = 1048576, hard = 1048576 }\ncore = { soft = 0, hard = \"unlimited\" }\n\
             memlock = { soft = \"infinity\", hard = \"infinity\" }\n",
        )
        .unwrap();
        assert_eq!(
            r["nofile"],
            Rlimit {
                soft: Limit::Value(1 << 20),
                hard: Limit::Value(1 << 20)
            }
        );
        assert_eq!(
            r["core"],
            Rlimit {
                soft: Limit::Value(0),
                hard: Limit::Unlimited
            }
        );
        assert_eq!(r["memlock"].soft, Limit::Unlimited);
    }

    #[test]
    fn bad_values_say_why() {
        assert!(parse("[rlimits]\nnofile = { soft = -1, hard = 1 }\n")
            .unwrap_err()
            .contains("negative"));
        assert!(parse("[rlimits]\nnofile = { soft = \"lots\", hard = 1 }\n")
            .unwrap_err()
            .contains("\"lots\""));
        assert!(parse("[rlimits]\nnofile = { soft = 1 }\n")
            .unwrap_err()
            .contains("missing field `hard`"));
        assert!(parse("[rlimits]\nnofile = { soft = 1, hard = 1, x = 2 }\n")
            .unwrap_err()
            .contains("unknown field `x`"));
    }

    #[test]
    fn validation_names_the_key() {
        let lim = |s, h| Rlimit { soft: s, hard: h };
        assert!(validate("nofile", &lim(Limit::Value(1), Limit::Unlimited)).is_ok());
        let e = validate("nofiles", &lim(Limit::Value(1), Limit::Value(1)))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("rlimits.nofiles: unknown resource (known: as, core,"),
            "{e}"
        );
        let e = validate("nproc", &lim(Limit::Unlimited, Limit::Value(10)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "rlimits.nproc: soft limit unlimited is above the hard limit 10"
        );
        let e = validate("core", &lim(Limit::Value(11), Limit::Value(10)))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "rlimits.core: soft limit 11 is above the hard limit 10");
    }

    #[test]
    fn apply_sets_limits_and_goes_on_past_errors() {
        // In a child process, so the test runner's own limits stay as they are.
        match unsafe_fork_and_check() {
            Ok(code) => assert_eq!(code, 0, "the child's checks failed (exit {code})"),
            Err(e) => panic!("fork: {e}"),
        }
    }

    /// Runs the checks in a forked child (exit 0 when they pass).
    fn unsafe_fork_and_check() -> nix::Result<i32> {
        use nix::sys::resource::getrlimit;
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        // SAFETY: the child only calls setrlimit/getrlimit and _exit (no allocation after
        // fork beyond what `apply` does on a small map, acceptable in a test child: the test
        // harness's other threads hold no lock we use).
        match unsafe { fork() }? {
            ForkResult::Child => {
                let (_, hard) = getrlimit(Resource::RLIMIT_CORE).unwrap_or((0, 0));
                let mut limits = Rlimits::new();
                limits.insert(
                    "core".into(),
                    Rlimit {
                        soft: Limit::Value(0),
                        hard: Limit::Value(hard.min(4096)),
                    },
                );
                limits.insert(
                    "bogus".into(),
                    Rlimit {
                        soft: Limit::Value(0),
                        hard: Limit::Value(0),
                    },
                );
                let (ok, errors) = apply(&limits);
                let good = ok == ["core"]
                    && errors.len() == 1
                    && matches!(errors[0], RlimitError::UnknownName(ref n) if n == "bogus")
                    && getrlimit(Resource::RLIMIT_CORE) == Ok((0, hard.min(4096)));
                // SAFETY: _exit ends the forked child without running the parent's atexit
                // handlers or test harness code.
                unsafe { libc::_exit(if good { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => match waitpid(child, None)? {
                WaitStatus::Exited(_, code) => Ok(code),
                other => Ok(100 + matches!(other, WaitStatus::Signaled(..)) as i32),
            },
        }
    }
}
