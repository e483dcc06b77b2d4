//! `[sysctl]`: kernel parameters written under `/proc/sys` at boot.
//!
//! Keys are sysctl(8) names: `"net.ipv4.ip_forward" = "1"` (quoted, one key) or the same
//! written as nested TOML tables (`[sysctl.net.ipv4]` `ip_forward = 1`, flattened here).
//! A name holding a `/` is taken as a path, sysctl(8)-style, for components that contain a
//! dot (`"net/ipv4/conf/eth0.100/rp_filter"`). Values may be strings, integers or booleans
//! (written as `1`/`0`).
//!
//! Keys are checked when applied, not when the file is parsed, so one bad key costs one error
//! line naming it and its value and the others still apply (the file's other settings are
//! not thrown away for a typo in a sysctl name).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the kernel exposes its parameters.
pub const PROC_SYS: &str = "/proc/sys";

/// The `[sysctl]` table, flattened to `name → value`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "toml::Table", into = "toml::Table")]
pub struct Sysctls(pub BTreeMap<String, String>);

impl TryFrom<toml::Table> for Sysctls {
    type Error = String;
    fn try_from(table: toml::Table) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        flatten("", table, &mut out)?;
        Ok(Self(out))
    }
}

fn flatten(
    prefix: &str,
    table: toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => u8::from(b).to_string(),
            toml::Value::Table(t) => {
                flatten(&name, t, out)?;
                continue;
            }
            other => {
                return Err(format!(
                    "{name}: expected a string, integer or boolean, found {}",
                    other.type_str()
                ))
            }
        };
        out.insert(name, text);
    }
    Ok(())
}

impl From<Sysctls> for toml::Table {
    fn from(s: Sysctls) -> toml::Table {
        s.0.into_iter()
            .map(|(k, v)| (k, toml::Value::String(v)))
            .collect()
    }
}

/// Why one sysctl was not applied; each message names the key and the value.
#[derive(Debug, thiserror::Error)]
pub enum SysctlError {
    /// The name has characters or a shape a sysctl name cannot have.
    #[error("sysctl {key} = {value:?}: invalid name (letters, digits, `_`, `-`, `.` or `/` separated components)")]
    BadName {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// No such file under `/proc/sys` (a typo, or a module not loaded).
    #[error("sysctl {key} = {value:?}: no such key ({path} does not exist)", path = path.display())]
    NoSuchKey {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// The file looked for.
        path: PathBuf,
    },
    /// The kernel refused the value (EINVAL for a bad value, EPERM for a read-only key …).
    #[error("sysctl {key} = {value:?}: cannot write {path}: {source}", path = path.display())]
    Write {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The file under `proc_sys` for sysctl `key`, or `None` if `key` is not a valid name.
pub fn key_path(proc_sys: &Path, key: &str) -> Option<PathBuf> {
    let ok_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':' | '@' | '+');
    if key.is_empty() || !key.chars().all(ok_char) {
        return None;
    }
    let sep = if key.contains('/') { '/' } else { '.' };
    let mut path = proc_sys.to_path_buf();
    for part in key.split(sep) {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

/// Writes one sysctl.
pub fn apply_one(proc_sys: &Path, key: &str, value: &str) -> Result<(), SysctlError> {
    let (k, v) = (key.to_string(), value.to_string());
    let path = key_path(proc_sys, key).ok_or_else(|| SysctlError::BadName {
        key: k.clone(),
        value: v.clone(),
    })?;
    if !path.is_file() {
        return Err(SysctlError::NoSuchKey {
            key: k,
            value: v,
            path,
        });
    }
    let write = || -> io::Result<()> {
        let mut file = fs::OpenOptions::new().write(true).open(&path)?;
        file.write_all(value.as_bytes())
    };
    write().map_err(|source| SysctlError::Write {
        key: k,
        value: v,
        path: path.clone(),
        source,
    })
}

/// The outcome of applying a table.
#[derive(Debug, Default)]
pub struct Applied {
    /// Keys written.
    pub ok: Vec<String>,
    /// One error per key not written.
    pub errors: Vec<SysctlError>,
}

/// Applies every entry of `table` under `proc_sys`, in name order; a failure never stops
/// the others.
pub fn apply(proc_sys: &Path, table: &Sysctls) -> Applied {
    let mut out = Applied::default();
    for (key, value) in &table.0 {
        match apply_one(proc_sys, key, value) {
            Ok(()) => out.ok.push(key.clone()),
            Err(e) => out.errors.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(default)]
        sysctl: Sysctls,
    }

    fn parse(text: &str) -> Result<Sysctls, String> {
        toml::from_str::<Doc>(text)
            .map(|d| d.sysctl)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn quoted_and_nested_keys_flatten() {
        let s = parse(
            "[sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\nvm.swappiness = 10\n\"kernel.panic_on_oops\" = true\n\
             [sysctl.net.core]\nsomaxconn = 4096\n",
        )
        .unwrap();
        let got: Vec<(&str, &str)> = s.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("kernel.panic_on_oops", "1"),
                ("net.core.somaxconn", "4096"),
                ("net.ipv4.ip_forward", "1"),
                ("vm.swappiness", "10")
            ]
        );
        assert!(parse("").unwrap().0.is_empty());
    }

    #[test]
    fn bad_value_types_name_the_key() {
        let err = parse("[sysctl]\n\"net.a\" = [1, 2]\n").unwrap_err();
        assert!(
            err.contains("net.a: expected a string, integer or boolean, found array"),
            "{err}"
        );
    }

    #[test]
    fn round_trips_through_toml() {
        let s = parse("[sysctl]\nnet.ipv4.ip_forward = 1\n").unwrap();
        let table = toml::Table::from(s.clone());
        assert_eq!(Sysctls::try_from(table).unwrap(), s);
    }

    #[test]
    fn key_paths() {
        let root = Path::new("/proc/sys");
        assert_eq!(
            key_path(root, "net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            key_path(root, "net/ipv4/conf/eth0.100/rp_filter").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        for bad in [
            "",
            "net..x",
            ".net",
            "net.",
            "net/../../etc/passwd",
            "a b",
            "net.ipv4.ip_forward\n",
            "x/./y",
        ] {
            assert!(key_path(root, bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn apply_writes_reports_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("net/ipv4")).unwrap();
        fs::write(root.join("net/ipv4/ip_forward"), "0").unwrap();
        fs::create_dir_all(root.join("vm/readonly")).unwrap();
        let table = Sysctls(
            [
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv4.ip_fowrard", "1"),
                ("bad name", "x"),
                // A directory in place of the file: not a key.
                ("vm.readonly", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let out = apply(root, &table);
        assert_eq!(out.ok, ["net.ipv4.ip_forward"]);
        assert_eq!(
            fs::read_to_string(root.join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        let lines: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("sysctl bad name = \"x\": invalid name"),
            "{lines:?}"
        );
        assert!(
            lines[1].starts_with("sysctl net.ipv4.ip_fowrard = \"1\": no such key ("),
            "{lines:?}"
        );
        assert!(
            lines[1].ends_with("net/ipv4/ip_fowrard does not exist)"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("sysctl vm.readonly = \"1\": no such key"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_refused_write_names_key_and_value() {
        // /proc/sys on the host: a read-only key refuses writes even for root.
        let root = Path::new(PROC_SYS);
        if !root.join("kernel/osrelease").is_file() {
            println!("skipped: no /proc/sys/kernel/osrelease");
            return;
        }
        let err = apply_one(root, "kernel.osrelease", "9.9").unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with(
                "sysctl kernel.osrelease = \"9.9\": cannot write /proc/sys/kernel/osrelease: "
            ),
            "{line}"
        );
    }
}
