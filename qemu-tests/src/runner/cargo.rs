//! Test executables from cargo, and the tests in each.
//!
//! `cargo test --no-run --message-format=json-render-diagnostics` builds the test binaries
//! and names each one (a `compiler-artifact` message with `profile.test` and an
//! `executable`); each binary then lists its tests with libtest's `--list --format terse`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::RunnerError;

/// What a test binary was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `tests/<name>.rs`: scenarios, one job per test.
    Integration,
    /// The unit tests of the library or of a binary: one job for the whole binary.
    Unit,
}

/// One test executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBinary {
    /// `network` for `tests/network.rs`, `lib` or `bin <name>` for unit tests.
    pub name: String,
    /// Integration or unit tests.
    pub kind: Kind,
    /// The executable.
    pub exe: PathBuf,
    /// The package's directory (cargo runs tests from there).
    pub package_dir: PathBuf,
    /// The package's name.
    pub package: String,
}

/// Builds the test binaries of `packages` (cargo's own arguments: `-p NAME`, `--workspace`,
/// `--exclude NAME`) and returns them in cargo's order.
pub fn build(cargo: &OsString, packages: &[String]) -> Result<Vec<TestBinary>, RunnerError> {
    let mut command = Command::new(cargo);
    command.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    command.args(packages);
    let line = crate::process::command_line(&command);
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| RunnerError::Spawn {
            what: line.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(RunnerError::Command {
            what: line,
            status: output.status.to_string(),
        });
    }
    Ok(parse_artifacts(&String::from_utf8_lossy(&output.stdout)))
}

/// The package's name in a cargo package id: "path+file:///…/qemu-tests#berth-qemu-tests@0.1.0",
/// or "path+file:///…/berth#0.1.0" when the directory has the package's name, or the older
/// "name 0.1.0 (source)".
fn package_name(id: &str) -> String {
    match id.rsplit_once('#') {
        Some((url, fragment)) => match fragment.split_once('@') {
            Some((name, _)) => name.to_string(),
            None => url.rsplit('/').next().unwrap_or(url).to_string(),
        },
        None => id.split(' ').next().unwrap_or(id).to_string(),
    }
}

/// The test executables in cargo's JSON messages.
pub fn parse_artifacts(json_lines: &str) -> Vec<TestBinary> {
    let mut out = Vec::new();
    for line in json_lines.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["profile"]["test"] != true {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let target = &msg["target"];
        let target_name = target["name"].as_str().unwrap_or_default();
        let kinds: Vec<&str> = target["kind"]
            .as_array()
            .map(|k| k.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let (name, kind) = if kinds.contains(&"test") {
            (target_name.to_string(), Kind::Integration)
        } else if kinds.contains(&"bin") {
            (format!("bin {target_name}"), Kind::Unit)
        } else {
            ("lib".to_string(), Kind::Unit)
        };
        let manifest = PathBuf::from(msg["manifest_path"].as_str().unwrap_or_default());
        let package_dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
        let package = package_name(msg["package_id"].as_str().unwrap_or_default());
        out.push(TestBinary {
            name,
            kind,
            exe: PathBuf::from(exe),
            package_dir,
            package,
        });
    }
    out
}

/// Which tests a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Tests not marked `#[ignore]` (what `cargo test` runs).
    Skip,
    /// Only the ignored ones (`--ignored`).
    Only,
    /// Both (`--include-ignored`).
    Include,
}

impl Ignored {
    /// The libtest flag, if any.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Ignored::Skip => None,
            Ignored::Only => Some("--ignored"),
            Ignored::Include => Some("--include-ignored"),
        }
    }
}

/// The tests of `bin` (`--list --format terse`), as `ignored` selects.
pub fn list_tests(bin: &TestBinary, ignored: Ignored) -> Result<Vec<String>, RunnerError> {
    let list = |only_ignored: bool| -> Result<Vec<String>, RunnerError> {
        let mut command = Command::new(&bin.exe);
        command
            .args(["--list", "--format", "terse"])
            .current_dir(&bin.package_dir);
        if only_ignored {
            command.arg("--ignored");
        }
        let line = crate::process::command_line(&command);
        let output =
            command
                .stdin(Stdio::null())
                .output()
                .map_err(|source| RunnerError::Spawn {
                    what: line.clone(),
                    source,
                })?;
        if !output.status.success() {
            return Err(RunnerError::Command {
                what: line,
                status: output.status.to_string(),
            });
        }
        Ok(parse_list(&String::from_utf8_lossy(&output.stdout)))
    };
    Ok(match ignored {
        Ignored::Include => list(false)?,
        Ignored::Only => list(true)?,
        Ignored::Skip => {
            let skipped = list(true)?;
            list(false)?
                .into_iter()
                .filter(|t| !skipped.contains(t))
                .collect()
        }
    })
}

/// Test names in libtest's terse listing (`name: test` lines; benches are left out).
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_name_binaries_by_kind() {
        assert_eq!(package_name("path+file:///w/berth#0.1.0"), "berth");
        assert_eq!(
            package_name("path+file:///w/engine#berth-engine@0.1.0"),
            "berth-engine"
        );
        assert_eq!(package_name("regex 1.0 (registry+https://x)"), "regex");
        let json = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/qemu-tests#berth-qemu-tests@0.1.0","manifest_path":"/w/qemu-tests/Cargo.toml","target":{"kind":["test"],"name":"network"},"profile":{"test":true},"executable":"/t/debug/deps/network-abc"}
{"reason":"compiler-artifact","package_id":"path+file:///w/qemu-tests#berth-qemu-tests@0.1.0","manifest_path":"/w/qemu-tests/Cargo.toml","target":{"kind":["lib"],"name":"berth_qemu_tests"},"profile":{"test":true},"executable":"/t/debug/deps/berth_qemu_tests-1"}
{"reason":"compiler-artifact","package_id":"path+file:///w/qemu-tests#berth-qemu-tests@0.1.0","manifest_path":"/w/qemu-tests/Cargo.toml","target":{"kind":["bin"],"name":"berth-test-agent"},"profile":{"test":true},"executable":"/t/debug/deps/berth_test_agent-2"}
{"reason":"compiler-artifact","package_id":"regex 1.0 (registry+https://github.com/rust-lang/crates.io-index)","manifest_path":"/r/Cargo.toml","target":{"kind":["lib"],"name":"regex"},"profile":{"test":false},"executable":null}
{"reason":"build-finished","success":true}
not json"#;
        let bins = parse_artifacts(json);
        let names: Vec<(&str, Kind)> = bins.iter().map(|b| (b.name.as_str(), b.kind)).collect();
        assert_eq!(
            names,
            [
                ("network", Kind::Integration),
                ("lib", Kind::Unit),
                ("bin berth-test-agent", Kind::Unit)
            ]
        );
        assert_eq!(bins[0].package, "berth-qemu-tests");
        assert_eq!(bins[0].package_dir, Path::new("/w/qemu-tests"));
        assert_eq!(bins[0].exe, Path::new("/t/debug/deps/network-abc"));
    }

    #[test]
    fn terse_listing() {
        let text = "a::b: test\nslow: bench\nc: test\n\n2 tests, 1 benchmark\n";
        assert_eq!(parse_list(text), ["a::b", "c"]);
    }
}
