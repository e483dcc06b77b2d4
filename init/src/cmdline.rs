//! The kernel command line (`/proc/cmdline`) as the last configuration layer.
//!
//! Every `berth.<dotted.key>=<value>` argument overrides that key of `init.toml`, so a node
//! can be reconfigured from the boot loader (or QEMU `-append`) without rebuilding the
//! image. Layers, later wins: built-in defaults → `/etc/berth/init.toml` → kernel command
//! line. Values are typed by the key they set (see [`Overlay::parse`]); an invalid argument
//! is reported as one line naming it and skipped, the other arguments still apply.
//!
//! Tokenizing follows the kernel's `next_arg()` (`lib/cmdline.c`): arguments are separated
//! by whitespace, double quotes group (`berth.berthd.args="-v --debug"` or
//! `"berth.berthd.args=-v --debug"`), the first `=` outside quotes splits key from value, and
//! an argument without `=` is a bare flag.
//!
//! `berth.config=<url>` names a node configuration fetched over the network (PXE); it is
//! kept in [`Overlay::config_url`] and fetched by [`crate::remote_config`].

use std::path::Path;

/// Where the running kernel exposes its command line.
pub const PROC_CMDLINE: &str = "/proc/cmdline";

/// Prefix of the arguments that are ours.
pub const PREFIX: &str = "berth.";

/// Reads [`PROC_CMDLINE`] (or another file, for tests).
pub fn read(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// One argument of the kernel command line, quotes removed as the kernel removes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    /// The argument as written (quotes included), for messages.
    pub raw: String,
    /// The part before the first `=` outside quotes.
    pub key: String,
    /// The part after it; `None` for a bare flag.
    pub value: Option<String>,
}

/// Splits a kernel command line into arguments the way the kernel does (`next_arg()` in
/// `lib/cmdline.c`): whitespace separates, a double quote toggles quoting (the quote stays
/// part of the text unless it opens the argument or the value and closes it), the first
/// `=` outside or inside quotes ends the key.
pub fn split(text: &str) -> Vec<Arg> {
    let bytes = text.as_bytes();
    let mut args = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let start = i;
        let mut in_quote = false;
        let mut equals = None;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_whitespace() && !in_quote {
                break;
            }
            if equals.is_none() && b == b'=' {
                equals = Some(i);
            }
            if b == b'"' {
                in_quote = !in_quote;
            }
            i += 1;
        }
        let raw = &text[start..i];
        args.push(unquote(raw, equals.map(|e| e - start)));
    }
    args
}

/// The kernel's quote removal: a leading quote of the argument, a leading quote of the
/// value, and then a trailing quote.
fn unquote(raw: &str, equals: Option<usize>) -> Arg {
    let quoted_arg = raw.starts_with('"');
    let strip_trailing = |s: &str, opened: bool| -> String {
        if opened {
            s.strip_suffix('"').unwrap_or(s).to_string()
        } else {
            s.to_string()
        }
    };
    match equals {
        Some(eq) => {
            let key = raw[..eq]
                .strip_prefix('"')
                .unwrap_or(&raw[..eq])
                .to_string();
            let value = &raw[eq + 1..];
            let (value, opened) = match value.strip_prefix('"') {
                Some(v) => (v, true),
                None => (value, quoted_arg),
            };
            Arg {
                raw: raw.to_string(),
                key,
                value: Some(strip_trailing(value, opened)),
            }
        }
        None => {
            let key = raw.strip_prefix('"').unwrap_or(raw);
            Arg {
                raw: raw.to_string(),
                key: strip_trailing(key, quoted_arg),
                value: None,
            }
        }
    }
}

/// One invalid `berth.` argument: reported as one line, then ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("kernel command line: {arg}: {message}")]
pub struct ArgError {
    /// The argument exactly as written.
    pub arg: String,
    /// What is wrong with it.
    pub message: String,
}

/// One typed setting taken from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The argument as written, for messages.
    pub arg: String,
    /// Dotted path of the key, `-` already turned into `_`.
    pub path: Vec<String>,
    /// The value, typed like the default at that path.
    pub value: toml::Value,
}

impl Setting {
    /// Dotted key, e.g. `berthd.max_failures`.
    pub fn key(&self) -> String {
        self.path.join(".")
    }
}

/// The `berth.` arguments of a command line, typed and checked against the schema.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// Settings in command-line order (later wins).
    pub settings: Vec<Setting>,
    /// `berth.config=<url>`: where to fetch a node configuration (the last one wins).
    pub config_url: Option<String>,
    /// Invalid arguments, each already skipped.
    pub errors: Vec<ArgError>,
}

impl Overlay {
    /// Collects the `berth.` arguments of `cmdline`. `schema` is the serialized built-in
    /// defaults: a key must exist there, and its default value gives the type: integers
    /// (unsigned), booleans (`true`/`false`, also `1`/`0`, `yes`/`no`, `on`/`off`; a bare
    /// flag means true), strings, and arrays (comma separated, empty for an empty list).
    /// Other arguments are ignored. Dashes in the key count as underscores, as for kernel
    /// module parameters.
    pub fn parse(cmdline: &str, schema: &toml::Table) -> Self {
        let mut overlay = Self::default();
        for arg in split(cmdline) {
            let Some(key) = arg.key.strip_prefix(PREFIX) else {
                continue;
            };
            let err = |message: &str| ArgError {
                arg: arg.raw.clone(),
                message: message.to_string(),
            };
            if key == "config" {
                match &arg.value {
                    Some(url) if !url.is_empty() => overlay.config_url = Some(url.clone()),
                    _ => overlay.errors.push(err("missing value: expected a URL")),
                }
                continue;
            }
            let path: Vec<String> = key.split('.').map(|part| part.replace('-', "_")).collect();
            match typed_value(&path, arg.value.as_deref(), schema) {
                Ok(value) => overlay.settings.push(Setting {
                    arg: arg.raw.clone(),
                    path,
                    value,
                }),
                Err(message) => overlay.errors.push(err(&message)),
            }
        }
        overlay
    }

    /// Writes `settings` into `table` at their dotted paths, in order (later wins).
    pub fn apply<'a>(table: &mut toml::Table, settings: impl IntoIterator<Item = &'a Setting>) {
        for setting in settings {
            let (last, parents) = setting.path.split_last().expect("a setting has a key");
            let mut current = &mut *table;
            for part in parents {
                let entry = current
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = toml::Value::Table(toml::Table::new());
                }
                current = entry.as_table_mut().expect("just made a table");
            }
            current.insert(last.clone(), setting.value.clone());
        }
    }
}

/// Converts `value` to the type of the default at `path` in `schema`.
fn typed_value(
    path: &[String],
    value: Option<&str>,
    schema: &toml::Table,
) -> Result<toml::Value, String> {
    if path.iter().any(String::is_empty) {
        return Err("unknown key".into());
    }
    if path[0] == "service" {
        return Err("[[service]] entries cannot be set on the kernel command line".into());
    }
    let mut current = schema;
    let (last, parents) = path.split_last().expect("split gives at least one part");
    for part in parents {
        match current.get(part) {
            Some(toml::Value::Table(table)) => current = table,
            _ => return Err("unknown key".into()),
        }
    }
    let default = current.get(last).ok_or_else(|| "unknown key".to_string())?;
    if let toml::Value::Boolean(_) = default {
        return match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("true" | "1" | "yes" | "on" | "y") => Ok(toml::Value::Boolean(true)),
            Some("false" | "0" | "no" | "off" | "n") => Ok(toml::Value::Boolean(false)),
            Some(_) => Err("invalid value: expected true or false".into()),
        };
    }
    let value = value.ok_or_else(|| "missing value".to_string())?;
    match default {
        toml::Value::Integer(_) => value
            .parse::<u64>()
            .map_err(|_| "invalid value: expected an unsigned integer".to_string())
            .and_then(|n| {
                i64::try_from(n).map_err(|_| "invalid value: number too large".to_string())
            })
            .map(toml::Value::Integer),
        toml::Value::String(_) => Ok(toml::Value::String(value.to_string())),
        toml::Value::Array(_) => Ok(toml::Value::Array(if value.is_empty() {
            Vec::new()
        } else {
            value
                .split(',')
                .map(|item| toml::Value::String(item.to_string()))
                .collect()
        })),
        toml::Value::Table(_) => Err("not a single setting: set one of its keys".into()),
        _ => Err("cannot be set on the kernel command line".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type KeyValues = Vec<(String, Option<String>)>;

    fn keys_values(text: &str) -> KeyValues {
        split(text).into_iter().map(|a| (a.key, a.value)).collect()
    }

    fn kv(key: &str, value: Option<&str>) -> (String, Option<String>) {
        (key.to_string(), value.map(String::from))
    }

    #[test]
    fn split_like_the_kernel() {
        let cases: &[(&str, KeyValues)] = &[
            ("", vec![]),
            ("  \n", vec![]),
            (
                "console=ttyS0 quiet",
                vec![kv("console", Some("ttyS0")), kv("quiet", None)],
            ),
            ("a=b=c", vec![kv("a", Some("b=c"))]),
            ("a=", vec![kv("a", Some(""))]),
            (
                "berth.x=\"a b\" y",
                vec![kv("berth.x", Some("a b")), kv("y", None)],
            ),
            (
                "\"berth.x=a b\" y",
                vec![kv("berth.x", Some("a b")), kv("y", None)],
            ),
            ("\"quoted flag\"", vec![kv("quoted flag", None)]),
            // A quote in the middle groups but stays, like the kernel.
            (
                "a=b\"c d\"e f",
                vec![kv("a", Some("b\"c d\"e")), kv("f", None)],
            ),
            ("a=\"unterminated b", vec![kv("a", Some("unterminated b"))]),
            (
                "\tx=1\t\ty=2\n",
                vec![kv("x", Some("1")), kv("y", Some("2"))],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(&keys_values(text), want, "{text:?}");
        }
    }

    #[test]
    fn raw_keeps_the_quotes() {
        let args = split("berth.berthd.args=\"-v -d\"");
        assert_eq!(args[0].raw, "berth.berthd.args=\"-v -d\"");
    }

    fn schema() -> toml::Table {
        toml::Table::try_from(crate::config::Config::default()).unwrap()
    }

    fn overlay(text: &str) -> Overlay {
        Overlay::parse(text, &schema())
    }

    fn errors(text: &str) -> Vec<String> {
        overlay(text)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn values_are_typed_by_the_key() {
        let o = overlay(
            "root=/dev/vda berth.berthd.max_failures=7 berth.shutdown.power_button=off berth.bridge.port= \
             berth.modules.load=a,b berth.berthd.args= berth.console.level=debug",
        );
        assert!(o.errors.is_empty(), "{:?}", o.errors);
        let got: Vec<(String, toml::Value)> = o
            .settings
            .iter()
            .map(|s| (s.key(), s.value.clone()))
            .collect();
        let s = |v: &str| toml::Value::String(v.into());
        assert_eq!(
            got,
            vec![
                ("berthd.max_failures".into(), toml::Value::Integer(7)),
                ("shutdown.power_button".into(), toml::Value::Boolean(false)),
                ("bridge.port".into(), s("")),
                (
                    "modules.load".into(),
                    toml::Value::Array(vec![s("a"), s("b")])
                ),
                ("berthd.args".into(), toml::Value::Array(vec![])),
                ("console.level".into(), s("debug")),
            ]
        );
    }

    #[test]
    fn bare_flag_is_true_for_booleans_only() {
        let o = overlay("berth.shutdown.power_button berth.berthd.path");
        assert_eq!(o.settings.len(), 1);
        assert_eq!(o.settings[0].value, toml::Value::Boolean(true));
        assert_eq!(
            errors("berth.berthd.path"),
            ["kernel command line: berth.berthd.path: missing value"]
        );
    }

    #[test]
    fn dashes_count_as_underscores() {
        let o = overlay("berth.berthd.max-failures=2");
        assert_eq!(o.settings[0].key(), "berthd.max_failures");
    }

    #[test]
    fn each_error_kind_is_one_line_naming_the_argument() {
        let cases = [
            (
                "berth.berthd.max_failures=x",
                "invalid value: expected an unsigned integer",
            ),
            (
                "berth.berthd.max_failures=-1",
                "invalid value: expected an unsigned integer",
            ),
            (
                "berth.berthd.max_failures=99999999999999999999",
                "invalid value: expected an unsigned integer",
            ),
            (
                "berth.berthd.ready_timeout_secs=18446744073709551615",
                "invalid value: number too large",
            ),
            (
                "berth.shutdown.power_button=maybe",
                "invalid value: expected true or false",
            ),
            ("berth.berthd.max_failure=3", "unknown key"),
            ("berth.bogus.x=1", "unknown key"),
            ("berth.console.level.x=1", "unknown key"),
            ("berth.=1", "unknown key"),
            ("berth.berthd..path=1", "unknown key"),
            (
                "berth.berthd=x",
                "not a single setting: set one of its keys",
            ),
            (
                "berth.service.name=x",
                "[[service]] entries cannot be set on the kernel command line",
            ),
            ("berth.config=", "missing value: expected a URL"),
            (
                "\"berth.bridge.wait_secs=a b\"",
                "invalid value: expected an unsigned integer",
            ),
        ];
        for (arg, message) in cases {
            assert_eq!(
                errors(arg),
                [format!("kernel command line: {arg}: {message}")],
                "{arg}"
            );
        }
    }

    #[test]
    fn invalid_arguments_do_not_stop_the_others() {
        let o = overlay("berth.berthd.max_failures=x berth.berthd.max_failures=3 berth.nope=1 berth.bridge.wait_secs=9");
        assert_eq!(o.errors.len(), 2);
        let keys: Vec<String> = o.settings.iter().map(Setting::key).collect();
        assert_eq!(keys, ["berthd.max_failures", "bridge.wait_secs"]);
    }

    #[test]
    fn other_arguments_are_ignored() {
        let o = overlay(
            "console=ttyS0 berthd.max_failures=x berth quiet ip=dhcp BERTH.x=1 -- init-arg",
        );
        assert_eq!(o, Overlay::default());
    }

    #[test]
    fn config_url_is_kept_not_applied() {
        let o =
            overlay("berth.config=http://10.0.2.2/node.toml berth.config=\"tftp://h/n 1.toml\"");
        assert_eq!(o.config_url.as_deref(), Some("tftp://h/n 1.toml"));
        assert!(o.settings.is_empty() && o.errors.is_empty());
    }

    #[test]
    fn apply_writes_dotted_paths_later_wins() {
        let o = overlay(
            "berth.berthd.max_failures=1 berth.berthd.max_failures=2 berth.console.level=warn",
        );
        let mut table: toml::Table = "[berthd]\npath = \"/x\"\n".parse().unwrap();
        Overlay::apply(&mut table, &o.settings);
        assert_eq!(table["berthd"]["max_failures"].as_integer(), Some(2));
        assert_eq!(table["berthd"]["path"].as_str(), Some("/x"));
        assert_eq!(table["console"]["level"].as_str(), Some("warn"));
    }
}
