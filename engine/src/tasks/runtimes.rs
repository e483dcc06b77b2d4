//! Runtime handlers: which OCI runtime a container's shim drives.
//!
//! `berth` (always present) is youki's `libcontainer` inside the shim itself. Others are
//! external OCI runtime binaries with runc's command line (`create/start/kill/delete/state`,
//! `--root`), declared in berthd's configuration:
//!
//! ```toml
//! [plugins."berth.runtime.v1"]
//! default_runtime = "runc"          # default: "berth"
//! [plugins."berth.runtime.v1".runtimes.runc]
//! binary = "/usr/sbin/runc"
//! ```
//!
//! A container records its handler's *name* (containerd's `runtime.name`); the binary is looked
//! up when its task is created, so a changed path applies to the next task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The configuration section.
pub const PLUGIN: &str = "berth.runtime.v1";

/// The built-in handler.
pub const BUILTIN: &str = "berth";

/// An invalid `[plugins."berth.runtime.v1"]` section.
#[derive(Debug, thiserror::Error)]
#[error("[plugins.\"{PLUGIN}\"] in {}: {message}", display_sources(.sources))]
pub struct RuntimesConfigError {
    pub sources: Vec<PathBuf>,
    pub message: String,
}

fn display_sources(s: &[PathBuf]) -> String {
    if s.is_empty() {
        "the configuration".to_owned()
    } else {
        s.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    default_runtime: Option<String>,
    #[serde(default)]
    runtimes: BTreeMap<String, RuntimeSection>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuntimeSection {
    binary: PathBuf,
}

/// How a handler runs containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// libcontainer in the shim.
    Builtin,
    /// An external OCI runtime binary with runc's command line.
    External { binary: PathBuf },
}

/// The handlers berthd knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtimes {
    pub default: String,
    handlers: BTreeMap<String, Handler>,
}

impl Default for Runtimes {
    fn default() -> Self {
        Self {
            default: BUILTIN.to_owned(),
            handlers: BTreeMap::from([(BUILTIN.to_owned(), Handler::Builtin)]),
        }
    }
}

impl Runtimes {
    /// Reads `[plugins."berth.runtime.v1"]` (absent: only `berth`).
    pub fn from_plugins(
        plugins: &BTreeMap<String, toml::Value>,
        sources: &[PathBuf],
    ) -> Result<Self, RuntimesConfigError> {
        let err = |message: String| RuntimesConfigError {
            sources: sources.to_vec(),
            message,
        };
        let mut me = Self::default();
        let Some(value) = plugins.get(PLUGIN) else {
            return Ok(me);
        };
        let section: Section = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().trim().to_string();
            err(if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        })?;
        for (name, r) in section.runtimes {
            if name == BUILTIN {
                return Err(err(format!(
                    "runtimes.{name}: {BUILTIN:?} is the built-in handler and takes no binary"
                )));
            }
            crate::metadata::validate::identifier("runtime", &name)
                .map_err(|e| err(format!("runtimes.{name}: {e}")))?;
            if !r.binary.is_absolute() {
                return Err(err(format!(
                    "runtimes.{name}.binary: {:?} must be an absolute path",
                    r.binary.display()
                )));
            }
            me.handlers
                .insert(name, Handler::External { binary: r.binary });
        }
        if let Some(d) = section.default_runtime {
            if !me.handlers.contains_key(&d) {
                return Err(err(format!(
                    "default_runtime {d:?} is not a configured runtime (known: {})",
                    me.names()
                )));
            }
            me.default = d;
        }
        Ok(me)
    }

    /// The handler called `name` (empty: the default), or an error naming it and the known
    /// ones.
    pub fn get(&self, name: &str) -> Result<(String, Handler), super::Error> {
        let name = if name.is_empty() { &self.default } else { name };
        self.handlers
            .get(name)
            .map(|h| (name.to_owned(), h.clone()))
            .ok_or_else(|| {
                super::Error::InvalidSpec(format!(
                    "runtime handler {name:?} is not configured (known: {}; add others under \
                     [plugins.\"{PLUGIN}\".runtimes.NAME] binary = \"/path\")",
                    self.names()
                ))
            })
    }

    fn names(&self) -> String {
        self.handlers
            .keys()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether `binary` exists and is executable (checked at task creation, for a clear error
/// before the shim starts).
pub fn check_binary(name: &str, binary: &Path) -> Result<(), super::Error> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(binary) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(super::Error::FailedPrecondition(format!(
            "runtime handler {name:?}: {} is not an executable file",
            binary.display()
        ))),
        Err(source) => Err(super::Error::Io {
            what: format!(
                "find the binary {} of runtime handler {name:?}",
                binary.display()
            ),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Runtimes, RuntimesConfigError> {
        let v: BTreeMap<String, toml::Value> = toml::from_str(text).unwrap();
        Runtimes::from_plugins(&v, &[PathBuf::from("/etc/berth/berthd.toml")])
    }

    #[test]
    fn default_is_builtin_only() {
        let r = parse("").unwrap();
        assert_eq!(r.get("").unwrap(), ("berth".into(), Handler::Builtin));
        let e = r.get("runc").unwrap_err().to_string();
        assert!(
            e.contains(r#"runtime handler "runc" is not configured"#),
            "{e}"
        );
    }

    #[test]
    fn external_runtimes_and_default() {
        let r = parse(
            "[\"berth.runtime.v1\"]\ndefault_runtime = \"runc\"\n[\"berth.runtime.v1\".runtimes.runc]\nbinary = \"/usr/sbin/runc\"\n",
        )
        .unwrap();
        assert_eq!(
            r.get("").unwrap(),
            (
                "runc".into(),
                Handler::External {
                    binary: "/usr/sbin/runc".into()
                }
            )
        );
        assert_eq!(r.get("berth").unwrap().1, Handler::Builtin);
    }

    #[test]
    fn bad_sections_name_the_problem() {
        let e = parse("[\"berth.runtime.v1\"]\ndefault_runtime = \"crun\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"default_runtime "crun" is not a configured runtime"#),
            "{e}"
        );
        assert!(e.contains("/etc/berth/berthd.toml"), "{e}");
        let e = parse("[\"berth.runtime.v1\".runtimes.runc]\nbinary = \"runc\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("runtimes.runc.binary"), "{e}");
        let e = parse("[\"berth.runtime.v1\".runtimes.runc]\npath = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("runtimes.runc"), "{e}");
    }
}
