//! Reading the layers: parsing a file strictly ([`Config::parse`]) or key by key
//! ([`Config::parse_lenient`]), and merging defaults, files and the kernel command line
//! ([`Config::load_layers`]), with every problem located by file, line and key.

use std::path::{Path, PathBuf};

use super::Config;

/// Errors reading the configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}", path = path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}:{line}: {key}{message}", path = path.display(), line = line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()), key = key.as_ref().map(|k| format!("key {k}: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value, when known.
        line: Option<usize>,
        /// Dotted path of the offending key, when known.
        key: Option<String>,
        /// The parser's message, without location.
        message: String,
    },
}

impl Config {
    /// Parses `text` (the contents of `path`, used in messages) over the built-in defaults.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let line = inner.span().map(|span| line_of(text, span.start));
            let key = (!key.is_empty() && key != ".").then_some(key);
            let message = inner.message().trim().replace('\n', " ");
            // Without a key the parser failed before reaching one: a syntax error.
            let message = if key.is_none() {
                format!("invalid TOML: {message}")
            } else {
                message
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message,
            }
        })
    }

    /// Parses one file leniently: its table with every invalid key removed (each reported
    /// with file, line and key), so one bad value costs only that value. A file that is not
    /// TOML at all is skipped whole (an empty table and the syntax error).
    pub fn parse_lenient(path: &Path, text: &str) -> (toml::Table, Vec<ConfigError>) {
        let mut errors = Vec::new();
        let mut table = match text.parse::<toml::Table>() {
            Ok(table) => table,
            Err(_) => {
                errors.extend(Self::parse(path, text).err());
                return (toml::Table::new(), errors);
            }
        };
        // The first error comes with an exact span from the text; later ones (after removing
        // keys) are located by searching the text for the key.
        let mut next = Self::parse(path, text).err();
        // Each round removes one key, so this ends; the bound guards against a key that
        // cannot be removed being reported again.
        for _ in 0..256 {
            let Some(err) = next.take() else {
                return (table, errors);
            };
            let removed = match &err {
                ConfigError::Invalid { key: Some(key), .. } => {
                    crate::layers::remove_path(&mut table, key)
                }
                _ => false,
            };
            if !removed {
                errors.push(err.whole_file());
                return (toml::Table::new(), errors);
            }
            errors.push(err);
            next = serde_path_to_error::deserialize::<_, Self>(toml::Value::Table(table.clone()))
                .err()
                .map(|err| {
                    let key = err.path().to_string();
                    let message = err.into_inner().message().trim().replace('\n', " ");
                    let key = (!key.is_empty() && key != ".").then_some(key);
                    let line = key
                        .as_deref()
                        .and_then(|k| crate::layers::find_line(text, k));
                    ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        key,
                        message,
                    }
                });
        }
        (toml::Table::new(), errors)
    }
}

impl ConfigError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Invalid { path, .. } => path,
        }
    }

    /// The same error, marked as costing the whole file.
    fn whole_file(self) -> Self {
        match self {
            Self::Invalid {
                path,
                line,
                key: Some(key),
                message,
            } => Self::Invalid {
                path,
                line,
                key: None,
                message: format!("key {key}: {message}"),
            },
            other => other,
        }
    }

    /// What init does about the error, for the end of its console line.
    pub fn consequence(&self) -> &'static str {
        match self {
            Self::Invalid { key: Some(_), .. } => {
                "key ignored, using the default or an earlier layer's value"
            }
            _ => "file ignored, using the defaults and the other layers",
        }
    }
}

/// The configuration after all layers, with what went wrong on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration to run with.
    pub config: Config,
    /// Problems in the files: each invalid key (dropped alone) or unusable file (skipped).
    pub file_errors: Vec<ConfigError>,
    /// Each skipped `berth.` argument of the kernel command line.
    pub cmdline_errors: Vec<crate::cmdline::ArgError>,
    /// `berth.config=<url>`: a node configuration fetched after networking
    /// (`crate::remote_config`).
    pub config_url: Option<String>,
}

impl Config {
    /// The layers, later wins: built-in defaults → each of `files` in order (missing ones
    /// are skipped; `[[service]]` entries add up, other keys replace) → the `berth.`
    /// arguments of the kernel command line `cmdline` (see [`crate::cmdline`]). Every
    /// invalid key or argument is dropped alone and reported.
    pub fn load_layers(files: &[&Path], cmdline: &str) -> Loaded {
        let mut base = toml::Table::new();
        let mut file_errors = Vec::new();
        for path in files {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let (table, errors) = Self::parse_lenient(path, &text);
                    file_errors.extend(errors);
                    crate::layers::merge(&mut base, table, &["service"]);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => file_errors.push(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                }),
            }
        }
        // Each file is valid on its own after dropping bad keys, and so is their merge.
        let file_config: Self =
            serde_path_to_error::deserialize(toml::Value::Table(base.clone())).unwrap_or_default();
        let schema = toml::Table::try_from(Self::default()).expect("the defaults serialize");
        let overlay = crate::cmdline::Overlay::parse(cmdline, &schema);
        let mut errors = overlay.errors;
        let mut accepted: Vec<&crate::cmdline::Setting> = overlay.settings.iter().collect();
        let config = loop {
            let mut table = base.clone();
            crate::cmdline::Overlay::apply(&mut table, accepted.iter().copied());
            match serde_path_to_error::deserialize::<_, Self>(toml::Value::Table(table)) {
                Ok(config) => break config,
                Err(err) => {
                    // A value of the right TOML type can still be refused (an unknown enum
                    // variant, a number out of range): drop the argument that set it, the
                    // last one for that key, and try again.
                    let key = err.path().to_string();
                    let key = key.split('[').next().unwrap_or_default().to_string();
                    let message = err.into_inner().message().trim().replace('\n', " ");
                    match accepted.iter().rposition(|s| s.key() == key) {
                        Some(index) => {
                            let setting = accepted.remove(index);
                            errors.push(crate::cmdline::ArgError {
                                arg: setting.arg.clone(),
                                message,
                            });
                        }
                        // Not ours (cannot happen for a file that parsed): the file layer alone.
                        None => break file_config,
                    }
                }
            }
        };
        Loaded {
            config,
            file_errors,
            cmdline_errors: errors,
            config_url: overlay.config_url,
        }
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
