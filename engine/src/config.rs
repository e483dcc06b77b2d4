//! berthd's configuration file, in containerd's shape (`version`, `root`, `state`, `imports`,
//! `[ttrpc]`, `[debug]`, `[plugins."…"]`).
//!
//! Every file (the main one and each import) is checked on its own, so an error names the file,
//! the line and the dotted key that is wrong. Imports are merged after the main file in the
//! order listed (globs expanded in sorted order), later files overriding earlier ones, as
//! containerd does.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Where berthd reads its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/berthd.toml";
/// Default ttrpc socket.
pub const DEFAULT_ADDRESS: &str = "/run/berth/berthd.sock";
/// The configuration format version this berthd reads.
pub const CONFIG_VERSION: u32 = 1;

/// A configuration problem, located in its file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or a key has a wrong name, type or value.
    #[error("{}", format_invalid(path, *line, key.as_deref(), message))]
    Invalid {
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Dotted key path, when known.
        key: Option<String>,
        message: String,
    },
    /// An `imports` entry is not a valid glob pattern.
    #[error("{path}: key imports: bad pattern {pattern:?}: {message}")]
    BadImport {
        path: PathBuf,
        pattern: String,
        message: String,
    },
}

fn format_invalid(path: &Path, line: Option<usize>, key: Option<&str>, message: &str) -> String {
    let mut s = path.display().to_string();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
    }
    if let Some(key) = key {
        s.push_str(&format!(": key {key}"));
    }
    s.push_str(": ");
    s.push_str(message);
    s
}

/// Log verbosity, as in containerd's `[debug] level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

/// `[ttrpc]`: the API socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TtrpcConfig {
    /// Unix socket path (or `unix://` URL) berthd listens on.
    pub address: String,
    /// Owner of the socket; the mode is always 0600.
    pub uid: u32,
    pub gid: u32,
}

/// `[debug]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebugConfig {
    pub level: LogLevel,
}

/// The effective configuration after defaults, main file and imports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub version: u32,
    /// Persistent state: content, metadata, snapshots.
    pub root: PathBuf,
    /// Runtime state that does not survive a reboot: sockets, shims.
    pub state: PathBuf,
    pub ttrpc: TtrpcConfig,
    pub debug: DebugConfig,
    /// Plugin sections, kept as given for the plugins that read them.
    pub plugins: BTreeMap<String, toml::Value>,
    /// The files that made this configuration, main file first.
    pub sources: Vec<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            version: CONFIG_VERSION,
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            ttrpc: TtrpcConfig {
                address: DEFAULT_ADDRESS.to_string(),
                uid: 0,
                gid: 0,
            },
            debug: DebugConfig {
                level: LogLevel::Info,
            },
            plugins: BTreeMap::new(),
            sources: Vec::new(),
        }
    }
}

/// `version` accepts only the version this binary knows.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct Version(u32);

impl TryFrom<i64> for Version {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        if v == i64::from(CONFIG_VERSION) {
            Ok(Version(CONFIG_VERSION))
        } else {
            Err(format!(
                "unsupported config version {v}; this berthd reads version {CONFIG_VERSION}"
            ))
        }
    }
}

/// A path value must be absolute: relative state directories depend on the cwd of whoever
/// started berthd, which is never what an operator meant.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
struct AbsPath(PathBuf);

impl TryFrom<String> for AbsPath {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let p = PathBuf::from(&s);
        if p.is_absolute() {
            Ok(AbsPath(p))
        } else {
            Err(format!("path {s:?} must be absolute"))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialTtrpc {
    address: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialDebug {
    level: Option<LogLevel>,
}

/// One file as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialConfig {
    version: Option<Version>,
    root: Option<AbsPath>,
    state: Option<AbsPath>,
    #[serde(default)]
    imports: Vec<String>,
    ttrpc: Option<PartialTtrpc>,
    debug: Option<PartialDebug>,
    plugins: Option<BTreeMap<String, toml::Value>>,
}

impl Config {
    fn apply(&mut self, p: PartialConfig) {
        if let Some(v) = p.version {
            self.version = v.0;
        }
        if let Some(r) = p.root {
            self.root = r.0;
        }
        if let Some(s) = p.state {
            self.state = s.0;
        }
        if let Some(t) = p.ttrpc {
            if let Some(a) = t.address {
                self.ttrpc.address = a;
            }
            if let Some(u) = t.uid {
                self.ttrpc.uid = u;
            }
            if let Some(g) = t.gid {
                self.ttrpc.gid = g;
            }
        }
        if let Some(d) = p.debug {
            if let Some(l) = d.level {
                self.debug.level = l;
            }
        }
        if let Some(plugins) = p.plugins {
            self.plugins.extend(plugins);
        }
    }

    /// The socket path of `[ttrpc] address` (without a `unix://` prefix).
    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(
            self.ttrpc
                .address
                .strip_prefix("unix://")
                .unwrap_or(&self.ttrpc.address),
        )
    }

    /// Loads `path` and its imports over the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &Overrides::new())
    }

    /// [`Config::load`] as it would be with some imported files replaced: an import matching
    /// a key of `overrides` is read from its value instead, or skipped for `None`; overrides
    /// whose file no import matched (a new drop-in) are read last. `berthd --check-config`
    /// judges a drop-in this way before berth-init writes it.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        let mut seen = Vec::new();
        let mut used = Vec::new();
        load_into(&mut cfg, path, &mut seen, overrides, &mut used)?;
        for (live, candidate) in overrides {
            if let (false, Some(c)) = (used.contains(live), candidate) {
                load_into(&mut cfg, c, &mut seen, overrides, &mut used)?;
            }
        }
        cfg.sources = seen;
        Ok(cfg)
    }

    /// Parses one file's text (no imports followed); `path` is used in messages.
    pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        cfg.apply(parse_partial(text, path)?);
        cfg.sources = vec![path.to_path_buf()];
        Ok(cfg)
    }

    /// Names of the settings that differ between `self` and `new` and only take effect after a
    /// restart of berthd.
    pub fn needs_restart(&self, new: &Config) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.root != new.root {
            v.push("root");
        }
        if self.state != new.state {
            v.push("state");
        }
        if self.ttrpc != new.ttrpc {
            v.push("ttrpc");
        }
        if self.plugins != new.plugins {
            v.push("plugins");
        }
        v
    }
}

/// Imported files replaced by others (or left out, `None`) for [`Config::load_with`].
pub type Overrides = BTreeMap<PathBuf, Option<PathBuf>>;

fn load_into(
    cfg: &mut Config,
    path: &Path,
    seen: &mut Vec<PathBuf>,
    overrides: &Overrides,
    used: &mut Vec<PathBuf>,
) -> Result<(), ConfigError> {
    // An import cycle (or a file imported twice) is merged once, like containerd.
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if seen.contains(&canonical) {
        return Ok(());
    }
    seen.push(canonical);
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut partial = parse_partial(&text, path)?;
    let imports = std::mem::take(&mut partial.imports);
    cfg.apply(partial);
    let base = path.parent().unwrap_or(Path::new("/"));
    for pattern in imports {
        let full = if Path::new(&pattern).is_absolute() {
            pattern.clone()
        } else {
            base.join(&pattern).display().to_string()
        };
        let paths = glob::glob(&full).map_err(|e| ConfigError::BadImport {
            path: path.to_path_buf(),
            pattern: pattern.clone(),
            message: e.to_string(),
        })?;
        let mut matched: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
        matched.sort();
        for m in matched {
            match overrides.get(&m) {
                Some(replacement) => {
                    used.push(m.clone());
                    if let Some(r) = replacement {
                        load_into(cfg, r, seen, overrides, used)?;
                    }
                }
                None => load_into(cfg, &m, seen, overrides, used)?,
            }
        }
    }
    Ok(())
}

fn parse_partial(text: &str, path: &Path) -> Result<PartialConfig, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key_path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim().to_string();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let mut key = if key_path == "." || key_path.is_empty() {
            None
        } else {
            Some(key_path)
        };
        // For an unknown key the path stops at its table; name the key itself.
        if let Some(rest) = message.strip_prefix("unknown field `") {
            if let Some(field) = rest.split('`').next() {
                key = Some(match key {
                    Some(k) if k == field || k.ends_with(&format!(".{field}")) => k,
                    Some(k) => format!("{k}.{field}"),
                    None => field.to_string(),
                });
            }
        }
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            key,
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse_str(text, Path::new("/etc/berth/berthd.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_when_empty() {
        let c = Config::parse_str("", Path::new("x.toml")).unwrap();
        assert_eq!(c.root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.state, PathBuf::from("/run/berth"));
        assert_eq!(c.socket_path(), PathBuf::from(DEFAULT_ADDRESS));
        assert_eq!(c.debug.level, LogLevel::Info);
    }

    #[test]
    fn full_file() {
        let c = Config::parse_str(
            "version = 1\nroot = \"/r\"\nstate = \"/s\"\n[ttrpc]\naddress = \"unix:///s/b.sock\"\nuid = 5\n[debug]\nlevel = \"debug\"\n[plugins.\"berth.snapshotter.v1.overlayfs\"]\nx = 1\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.socket_path(), PathBuf::from("/s/b.sock"));
        assert_eq!(c.ttrpc.uid, 5);
        assert_eq!(c.debug.level, LogLevel::Debug);
        assert!(c.plugins.contains_key("berth.snapshotter.v1.overlayfs"));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = err("version = 1\n\n[ttrpc]\nadress = \"/x\"\n");
        assert!(
            e.starts_with("/etc/berth/berthd.toml:4: key ttrpc.adress: unknown field `adress`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_key() {
        let e = err("[ttrpc]\nuid = \"root\"\n");
        assert!(
            e.starts_with("/etc/berth/berthd.toml:2: key ttrpc.uid: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn bad_level_and_version_and_relative_root() {
        let e = err("[debug]\nlevel = \"loud\"\n");
        assert!(
            e.contains(":2: key debug.level: unknown variant `loud`"),
            "{e}"
        );
        let e = err("version = 3\n");
        assert!(
            e.contains(":1: key version: unsupported config version 3"),
            "{e}"
        );
        let e = err("root = \"var/lib\"\n");
        assert!(
            e.contains(":1: key root: path \"var/lib\" must be absolute"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = err("version = 1\nroot = \n");
        assert!(e.starts_with("/etc/berth/berthd.toml:2: "), "{e}");
    }

    #[test]
    fn overrides_replace_remove_or_add_imported_files() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berthd.toml");
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(&main, "imports = [\"conf.d/*.toml\"]\nroot = \"/main\"\n").unwrap();
        let live = dir.path().join("conf.d/10-a.toml");
        std::fs::write(&live, "root = \"/a\"\n").unwrap();
        let candidate = dir.path().join("candidate.toml");
        std::fs::write(&candidate, "root = \"/candidate\"\n").unwrap();
        let with = |live: &Path, c: Option<&Path>| {
            let mut o = Overrides::new();
            o.insert(live.to_path_buf(), c.map(Path::to_path_buf));
            Config::load_with(&main, &o)
        };
        assert_eq!(
            with(&live, Some(&candidate)).unwrap().root,
            Path::new("/candidate")
        );
        assert_eq!(with(&live, None).unwrap().root, Path::new("/main"));
        let new = dir.path().join("conf.d/20-new.toml");
        assert_eq!(
            with(&new, Some(&candidate)).unwrap().root,
            Path::new("/candidate")
        );
        std::fs::write(&candidate, "root = 1\n").unwrap();
        assert!(with(&live, Some(&candidate)).is_err());
    }

    #[test]
    fn imports_merge_in_order_later_wins() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berthd.toml");
        std::fs::create_dir(dir.path().join("conf.d")).unwrap();
        std::fs::write(
            &main,
            "imports = [\"conf.d/*.toml\"]\nroot = \"/main\"\n[debug]\nlevel = \"warn\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("conf.d/10-a.toml"), "root = \"/a\"\n").unwrap();
        std::fs::write(
            dir.path().join("conf.d/20-b.toml"),
            "root = \"/b\"\nimports = [\"../berthd.toml\"]\n",
        )
        .unwrap();
        let c = Config::load(&main).unwrap();
        assert_eq!(c.root, PathBuf::from("/b"));
        assert_eq!(c.debug.level, LogLevel::Warn);
        assert_eq!(c.sources.len(), 3);
    }

    #[test]
    fn error_in_import_names_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("berthd.toml");
        std::fs::write(&main, "imports = [\"extra.toml\"]\n").unwrap();
        let extra = dir.path().join("extra.toml");
        std::fs::write(&extra, "[debug]\nlevel = 3\n").unwrap();
        let e = Config::load(&main).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2: key debug.level", extra.display())),
            "{e}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = Config::load(Path::new("/nonexistent/berthd.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/berthd.toml: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn restart_needed_only_for_structural_keys() {
        let a = Config::default();
        let mut b = a.clone();
        b.debug.level = LogLevel::Debug;
        assert!(a.needs_restart(&b).is_empty());
        b.root = PathBuf::from("/elsewhere");
        assert_eq!(a.needs_restart(&b), vec!["root"]);
    }
}
