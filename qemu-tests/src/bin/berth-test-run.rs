//! berth-test-run: runs test binaries (by default the QEMU scenarios) on parallel lanes with a
//! summary table (`make test`). Everything lives in [`berth_qemu_tests::runner`]; this only
//! parses arguments.

use std::process::ExitCode;
use std::time::Duration;

use berth_qemu_tests::runner::{self, cargo::Ignored, Options};

const USAGE: &str = "usage: berth-test-run [--lanes N] [--ignored | --include-ignored] \
[--guard-secs S] [-p PACKAGE | --workspace | --exclude PACKAGE]... [--scenarios PACKAGE] \
[--list] [FILTER]...
Builds the test binaries of the packages (default -p berth-qemu-tests) with cargo and runs them,
N jobs at a time (default: $BERTH_TEST_LANES, else the number of CPUs): each integration test
of the scenarios package (default berth-qemu-tests) as a job of its own, every other test
binary whole, as `cargo test` does; only jobs whose name contains a FILTER (all without
filters). Jobs claiming the same host resource never overlap
(qemu-tests/src/runner/exclusive.rs). --list prints the plan.";

fn main() -> ExitCode {
    let mut options = Options::default();
    let mut selection: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed: Result<(), String> = match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--lanes" => value("--lanes").and_then(|v| {
                v.parse()
                    .map(|n: usize| options.lanes = n.max(1))
                    .map_err(|e| format!("--lanes {v}: {e}"))
            }),
            "--guard-secs" => value("--guard-secs").and_then(|v| {
                v.parse()
                    .map(|s| options.guard = Duration::from_secs(s))
                    .map_err(|e| format!("--guard-secs {v}: {e}"))
            }),
            "-p" | "--package" => value("-p").map(|p| selection.extend(["-p".into(), p])),
            "--exclude" => value("--exclude").map(|p| selection.extend(["--exclude".into(), p])),
            "--workspace" => {
                selection.push(arg.clone());
                Ok(())
            }
            "--scenarios" => value("--scenarios").map(|p| options.scenarios = p),
            "--ignored" => {
                options.ignored = Ignored::Only;
                Ok(())
            }
            "--include-ignored" => {
                options.ignored = Ignored::Include;
                Ok(())
            }
            "--list" => {
                options.list = true;
                Ok(())
            }
            other if other.starts_with('-') => Err(format!("unknown option {other}")),
            filter => {
                options.filters.push(filter.to_string());
                Ok(())
            }
        };
        if let Err(e) = parsed {
            eprintln!("berth-test-run: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if !selection.is_empty() {
        options.packages = selection;
    }
    match runner::run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("berth-test-run: {e}");
            ExitCode::from(2)
        }
    }
}
