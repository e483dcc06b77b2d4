//! The configuration layers against files, command lines and the shipped `configs/init.toml`.

use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/berth/init.toml"), text)
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn shipped_file_equals_defaults_plus_services() {
    let text = include_str!("../../../configs/init.toml");
    let config = parse(text).unwrap();
    assert_eq!(
        Config {
            services: Vec::new(),
            ..config
        },
        Config::default()
    );
}

#[test]
fn file_overrides_key_by_key() {
    let config = parse("[berthd]\nmax_failures = 3\n[console]\nlevel = \"debug\"\n").unwrap();
    assert_eq!(config.berthd.max_failures, 3);
    assert_eq!(config.berthd.path, PathBuf::from("/usr/bin/berthd"));
    assert_eq!(config.berthd.backoff_initial_ms, 200);
    assert_eq!(config.console.level, Level::Debug);
    assert_eq!(config.modules, ModulesConfig::default());
}

#[test]
fn services_parse_with_defaults() {
    let config = parse(
        "[[service]]\nname = \"test-agent\"\npath = \"/usr/libexec/berth/berth-test-agent\"\nargs = [\"--port\", \"org.berth.test\"]\n",
    )
    .unwrap();
    assert_eq!(config.services.len(), 1);
    assert_eq!(config.services[0].name, "test-agent");
    assert_eq!(config.services[0].args, ["--port", "org.berth.test"]);
    assert_eq!(config.services[0].max_failures, 5);
}

#[test]
fn wrong_type_names_line_and_key() {
    let text = "# comment\n\n[console]\nlevel = \"info\"\n\n[berthd]\nmax_failures = \"x\"\n";
    let err = parse(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/berth/init.toml:7: key berthd.max_failures: invalid type: string \"x\", expected u32"
    );
}

#[test]
fn unknown_key_names_line_and_key() {
    let err = parse("[berthd]\npath = \"/x\"\nmax_failure = 3\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "/etc/berth/init.toml:3: key berthd.max_failure: unknown field `max_failure`"
        ),
        "{msg}"
    );
}

#[test]
fn unknown_table_is_reported() {
    let err = parse("[console]\nlevel = \"info\"\n[bogus]\nx = 1\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/berth/init.toml:3: key bogus: unknown field `bogus`"),
        "{msg}"
    );
}

#[test]
fn bad_enum_value_is_reported() {
    let err = parse("[shutdown]\non_fatal = \"explode\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/berth/init.toml:2: key shutdown.on_fatal: unknown variant `explode`"),
        "{msg}"
    );
}

#[test]
fn error_in_service_array_names_index() {
    let err =
        parse("[[service]]\nname = \"a\"\npath = \"/a\"\n[[service]]\nname = \"b\"\npath = 5\n")
            .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/berth/init.toml:6: key service[1].path: invalid type: integer `5`"),
        "{msg}"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let err = parse("[console]\nlevel = \"info\"\nthis is not toml\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/berth/init.toml:3: invalid TOML: "),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn missing_file_is_defaults_without_error() {
    let loaded = Config::load_layers(&[Path::new("/nonexistent/init.toml")], "");
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.file_errors.is_empty());
}

fn layers(file: Option<&str>, cmdline: &str) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("init.toml");
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
    }
    Config::load_layers(&[&path], cmdline)
}

fn error_lines(loaded: &Loaded) -> Vec<String> {
    loaded
        .cmdline_errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn cmdline_overrides_file_overrides_defaults() {
    let loaded = layers(
        Some("[berthd]\nmax_failures = 3\nbackoff_max_ms = 100\n[console]\nlevel = \"debug\"\n"),
        "console=ttyS0 berth.berthd.max_failures=9 berth.modules.load=a,b quiet",
    );
    assert!(loaded.file_errors.is_empty() && loaded.cmdline_errors.is_empty());
    let c = &loaded.config;
    assert_eq!(c.berthd.max_failures, 9);
    assert_eq!(c.berthd.backoff_max_ms, 100);
    assert_eq!(c.berthd.backoff_initial_ms, 200);
    assert_eq!(c.console.level, Level::Debug);
    assert_eq!(c.modules.load, ["a", "b"]);
}

#[test]
fn cmdline_keeps_file_services() {
    let loaded = layers(
        Some("[[service]]\nname = \"a\"\npath = \"/a\"\n"),
        "berth.bridge.port=",
    );
    assert_eq!(loaded.config.services.len(), 1);
    assert_eq!(loaded.config.bridge.port, "");
}

#[test]
fn cmdline_later_wins_and_bad_values_keep_the_earlier_one() {
    let loaded = layers(
        None,
        "berth.console.level=warn berth.console.level=error berth.console.level=loud",
    );
    assert_eq!(loaded.config.console.level, Level::Error);
    assert_eq!(
        error_lines(&loaded),
        ["kernel command line: berth.console.level=loud: unknown variant `loud`, expected one of `error`, `warn`, `info`, `debug`"]
    );
}

#[test]
fn cmdline_errors_are_skipped_one_by_one() {
    let loaded = layers(
        Some("[berthd]\nmax_failures = 3\n"),
        "berth.berthd.max_failures=x berth.shutdown.on_fatal=explode berth.berthd.max_failures=4294967296 \
         berth.shutdown.timeout_secs=7 berth.nope=1",
    );
    assert_eq!(loaded.config.berthd.max_failures, 3);
    assert_eq!(loaded.config.shutdown.on_fatal, FatalAction::Poweroff);
    assert_eq!(loaded.config.shutdown.timeout_secs, 7);
    let mut lines = error_lines(&loaded);
    lines.sort();
    assert_eq!(
        lines,
        [
            "kernel command line: berth.berthd.max_failures=4294967296: invalid value: integer `4294967296`, expected u32",
            "kernel command line: berth.berthd.max_failures=x: invalid value: expected an unsigned integer",
            "kernel command line: berth.nope=1: unknown key",
            "kernel command line: berth.shutdown.on_fatal=explode: unknown variant `explode`, expected `poweroff` or `reboot`",
        ]
    );
}

#[test]
fn cmdline_applies_over_defaults_when_the_file_is_bad() {
    let loaded = layers(
        Some("[berthd]\nmax_failures = \"x\"\n"),
        "berth.bridge.wait_secs=1",
    );
    assert_eq!(loaded.file_errors.len(), 1);
    assert_eq!(
        loaded.config,
        Config {
            bridge: BridgeConfig {
                wait_secs: 1,
                ..BridgeConfig::default()
            },
            ..Config::default()
        }
    );
}

#[test]
fn cmdline_quotes_group_values() {
    let loaded = layers(
        None,
        "quiet \"berth.berthd.path=/opt/my berthd\" berth.berthd.args=\"--log level,debug\" x=1",
    );
    assert!(loaded.cmdline_errors.is_empty());
    assert_eq!(loaded.config.berthd.path, PathBuf::from("/opt/my berthd"));
    assert_eq!(loaded.config.berthd.args, ["--log level", "debug"]);
}

#[test]
fn cmdline_config_url_is_kept() {
    let loaded = layers(None, "berth.config=http://10.0.2.2/node.toml");
    assert_eq!(
        loaded.config_url.as_deref(),
        Some("http://10.0.2.2/node.toml")
    );
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn no_cmdline_is_the_file() {
    let loaded = layers(Some("[shutdown]\non_fatal = \"reboot\"\n"), "");
    assert_eq!(loaded.config.shutdown.on_fatal, FatalAction::Reboot);
}

#[test]
fn services_sysctls_rlimits_and_resources_parse() {
    let config = parse(
        "[berthd]\nstop_timeout_secs = 20\n[berthd.resources]\nmemory_min = \"64M\"\ncpu_weight = 500\n\
         [sysctl]\n\"net.ipv4.ip_forward\" = \"1\"\n[rlimits]\nnofile = { soft = 4096, hard = 8192 }\n\
         [[service]]\nname = \"a\"\npath = \"/a\"\nrestart = \"never\"\nstop_timeout_secs = 2\n\
         [service.resources]\npids_max = 10\n",
    )
    .unwrap();
    assert_eq!(config.berthd.stop_timeout_secs, Some(20));
    assert_eq!(
        config.berthd.resources.memory_min,
        Some(crate::cgroup::resources::Size(64 << 20))
    );
    assert_eq!(config.sysctl.0["net.ipv4.ip_forward"], "1");
    assert_eq!(
        config.rlimits["nofile"].hard,
        crate::rlimit::Limit::Value(8192)
    );
    let s = &config.services[0];
    assert_eq!(
        (s.restart, s.stop_timeout_secs),
        (crate::supervisor::RestartPolicy::Never, Some(2))
    );
    assert!(s.resources.pids_max.is_some());
}

#[test]
fn bad_resource_values_name_line_and_key() {
    let err = parse("[berthd]\npath = \"/x\"\n[berthd.resources]\nmemory_max = \"lots\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "/etc/berth/init.toml:4: key berthd.resources.memory_max: invalid size \"lots\""
        ),
        "{err}"
    );
    let err = parse("[[service]]\nname = \"a\"\npath = \"/a\"\nrestart = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "/etc/berth/init.toml:4: key service[0].restart: unknown variant `sometimes`"
        ),
        "{err}"
    );
}

#[test]
fn a_bad_key_costs_only_that_key() {
    let text = "[console]\nlevel = \"debug\"\n[berthd]\nmax_failures = -1\nbackoff_max_ms = 100\nbogus = 1\n\
[[service]]\nname = \"a\"\npath = \"/a\"\n[[service]]\nname = \"b\"\n";
    let loaded = layers(Some(text), "");
    let c = &loaded.config;
    assert_eq!(c.console.level, Level::Debug);
    assert_eq!(c.berthd.max_failures, BerthdConfig::default().max_failures);
    assert_eq!(c.berthd.backoff_max_ms, 100);
    assert_eq!(c.services.len(), 1, "the service without a path is dropped");
    let lines: Vec<String> = loaded
        .file_errors
        .iter()
        .map(|e| format!("{e}; {}", e.consequence()))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].contains("init.toml:4: key berthd.max_failures: invalid value: integer `-1`"),
        "{lines:#?}"
    );
    assert!(
        lines[0].ends_with("key ignored, using the default or an earlier layer's value"),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("init.toml:6: key berthd.bogus: unknown field `bogus`")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("init.toml:10: key service[1]: missing field `path`")),
        "{lines:#?}"
    );
}

#[test]
fn syntax_error_skips_the_file() {
    let loaded = layers(
        Some("[berthd]\nmax_failures = 3\nthis is not toml\n"),
        "berth.console.level=warn",
    );
    assert_eq!(
        loaded.config,
        Config {
            console: ConsoleConfig { level: Level::Warn },
            ..Config::default()
        }
    );
    assert_eq!(loaded.file_errors.len(), 1);
    assert!(loaded.file_errors[0]
        .consequence()
        .starts_with("file ignored"));
}

#[test]
fn node_file_layers_over_the_image_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("init.toml");
    let node = dir.path().join("node.toml");
    std::fs::write(&image, "[berthd]\nmax_failures = 3\nbackoff_max_ms = 100\n[[service]]\nname = \"a\"\npath = \"/a\"\n").unwrap();
    std::fs::write(&node, "[berthd]\nmax_failures = 7\nbackoff_initial_ms = \"soon\"\n[[service]]\nname = \"b\"\npath = \"/b\"\n").unwrap();
    let loaded = Config::load_layers(&[&image, &node], "berth.berthd.backoff_max_ms=50");
    let c = &loaded.config;
    assert_eq!(c.berthd.max_failures, 7);
    assert_eq!(c.berthd.backoff_max_ms, 50);
    assert_eq!(
        c.berthd.backoff_initial_ms,
        BerthdConfig::default().backoff_initial_ms
    );
    assert_eq!(
        c.services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(loaded.file_errors.len(), 1);
    assert!(
        loaded.file_errors[0]
            .to_string()
            .contains("node.toml:3: key berthd.backoff_initial_ms"),
        "{}",
        loaded.file_errors[0]
    );
}

fn dotted_keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(t) => dotted_keys(&path, t, out),
            // `[[service]]` entries are checked from a sample entry below.
            toml::Value::Array(_) if path == "service" => {}
            _ => out.push(path),
        }
    }
}

#[test]
fn every_key_is_documented() {
    let docs = include_str!("../../../docs/init-config.md");
    let mut keys = Vec::new();
    dotted_keys(
        "",
        &toml::Table::try_from(Config::default()).unwrap(),
        &mut keys,
    );
    let service: ServiceConfig = toml::from_str("name = \"x\"\npath = \"/x\"").unwrap();
    dotted_keys(
        "service",
        &toml::Table::try_from(service).unwrap(),
        &mut keys,
    );
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !docs.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from docs/init-config.md: {missing:?}"
    );
}
