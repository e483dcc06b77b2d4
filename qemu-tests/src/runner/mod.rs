//! `berth-test-run`: runs the QEMU scenarios (and, in `make test`, the host test binaries) side
//! by side within the machine's cores.
//!
//! A TCG guest keeps about one host core busy, and most scenarios share nothing on the host
//! (see [`exclusive`]), so on 2 cores two scenarios at a time take about half the wall time
//! of one at a time. The runner builds the test binaries through cargo, lists their tests,
//! and runs each scenario as its own process (`<binary> --exact <test> --nocapture
//! --test-threads=1`, as `cargo test` would, from the package directory) on one of N lanes
//! (default: the number of CPUs), longest first by the last run's durations; scenarios holding
//! the same exclusive resource never overlap. Each test's output goes to a log file and is
//! printed whole when it ends (no interleaving); a failure's output carries the VM directory
//! and console tail as the harness prints them. At the end: one table with every test's
//! result, lane, start, wall and CPU time (user + sys of the test and its QEMU) and which tests
//! ran alongside it, and the totals.
//!
//! Each test process also has an outer hang guard ([`Options::guard`]) for a hang the
//! scenario's own guards do not catch; it kills the test's process group (QEMU included).

pub mod cargo;
pub mod child;
pub mod exclusive;
pub mod report;
pub mod schedule;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cargo::{Ignored, Kind, TestBinary};
use report::{Outcome, Verdict};

/// Errors that stop a run before its tests end.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A command could not be started.
    #[error("cannot run {what}: {source}")]
    Spawn {
        /// The command.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A build or listing command failed.
    #[error("{what} failed: {status}")]
    Command {
        /// The command.
        what: String,
        /// Its exit status.
        status: String,
    },
    /// Log files or the durations file.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No test matched.
    #[error("no test matches {0:?}")]
    NothingToRun(Vec<String>),
}

/// What to run, how.
#[derive(Debug, Clone)]
pub struct Options {
    /// What cargo builds: `-p <package>`, `--workspace`, `--exclude <package>` arguments.
    pub packages: Vec<String>,
    /// The package whose integration tests are scenarios: one job per test. Every other test
    /// binary is one job (its tests in one process, as `cargo test` runs them).
    pub scenarios: String,
    /// Lanes: tests running at once.
    pub lanes: usize,
    /// Ignored tests: skipped, only, or included.
    pub ignored: Ignored,
    /// Substrings of `binary::test`; empty: every test.
    pub filters: Vec<String>,
    /// Outer hang guard per test process.
    pub guard: Duration,
    /// Print the plan only.
    pub list: bool,
}

/// The outer hang guard, above every scenario's own guards: the longest scenario in `make test`
/// takes about 4 minutes on this project's 2-core machines under TCG (the UEFI scenario's four
/// boots, `containers` with its variant build), the whole ZFS conformance suite of `make
/// test-zfs` 6–8 (its own guard: 45 minutes), so a host 3x slower still passes, and a hang in
/// `make test` is still caught inside CI's 90 minutes.
pub const DEFAULT_GUARD: Duration = Duration::from_secs(60 * 60);

/// The package of the QEMU scenarios.
pub const SCENARIOS_PACKAGE: &str = "berth-qemu-tests";

/// Environment variable for the number of lanes.
pub const LANES_ENV: &str = "BERTH_TEST_LANES";

impl Default for Options {
    fn default() -> Self {
        let lanes = std::env::var(LANES_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
        Self {
            packages: vec!["-p".into(), SCENARIOS_PACKAGE.into()],
            scenarios: SCENARIOS_PACKAGE.into(),
            lanes: lanes.max(1),
            ignored: Ignored::Skip,
            filters: Vec::new(),
            guard: DEFAULT_GUARD,
            list: false,
        }
    }
}

/// Estimates for a first run (no durations file yet), seconds, by `binary::` prefix: the
/// long scenarios start first so the lanes end together. Measured on 2 busy cores under TCG;
/// only the order matters.
const FIRST_RUN_ESTIMATES: &[(&str, f64)] = &[
    ("berth-image tests/reproducible.rs", 600.0),
    ("berth tests/crash_safety.rs", 90.0),
    ("berth-engine tests/snapshotters.rs", 60.0),
    ("containers::", 200.0),
    ("uefi::", 150.0),
    ("services::", 120.0),
    ("registry::", 90.0),
    ("pxe::", 80.0),
    ("boot::", 60.0),
    ("content::", 60.0),
    ("system::", 60.0),
    ("network::lease_is_renewed", 70.0),
    ("network::static_config", 60.0),
];

/// Estimate for a scenario nothing is known about.
const UNKNOWN_ESTIMATE: f64 = 30.0;

/// One test process to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// `binary::test`, `<package> <binary> (unit tests)` or `<package> tests/<binary>.rs`.
    pub name: String,
    /// The test binary.
    pub exe: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// The package directory (working directory).
    pub dir: PathBuf,
    /// The package (for `CARGO_PKG_NAME`).
    pub package: String,
    /// What it holds while it runs (see [`exclusive`]).
    pub claims: Vec<schedule::Claim>,
    /// Expected duration, seconds (ordering only).
    pub estimate: f64,
}

/// The jobs for `binaries`: one per integration test, one per unit-test binary.
pub fn plan(
    binaries: &[TestBinary],
    options: &Options,
    history: &BTreeMap<String, f64>,
) -> Result<Vec<Job>, RunnerError> {
    let selected = |name: &str| {
        options.filters.is_empty() || options.filters.iter().any(|f| name.contains(f.as_str()))
    };
    let mut jobs = Vec::new();
    for bin in binaries {
        let tests = cargo::list_tests(bin, options.ignored)?;
        match bin.kind {
            Kind::Integration if bin.package == options.scenarios => {
                for test in tests {
                    let name = format!("{}::{test}", bin.name);
                    if !selected(&name) {
                        continue;
                    }
                    let mut args = vec![
                        "--exact".to_string(),
                        test,
                        "--nocapture".into(),
                        "--test-threads=1".into(),
                    ];
                    args.extend(options.ignored.flag().map(String::from));
                    jobs.push(Job {
                        claims: exclusive::claims_of(&name, exclusive::JobKind::Scenario),
                        estimate: estimate(&name, history),
                        name,
                        exe: bin.exe.clone(),
                        args,
                        dir: bin.package_dir.clone(),
                        package: bin.package.clone(),
                    });
                }
            }
            _ => {
                let name = match bin.kind {
                    Kind::Unit => format!("{} {} (unit tests)", bin.package, bin.name),
                    Kind::Integration => format!("{} tests/{}.rs", bin.package, bin.name),
                };
                if tests.is_empty() || !selected(&name) {
                    continue;
                }
                let claims = exclusive::claims_of(&name, exclusive::JobKind::Binary);
                jobs.push(Job {
                    estimate: match bin.kind {
                        Kind::Unit => history.get(&name).copied().unwrap_or(1.0),
                        Kind::Integration => estimate(&name, history),
                    },
                    name,
                    exe: bin.exe.clone(),
                    args: options
                        .ignored
                        .flag()
                        .map(String::from)
                        .into_iter()
                        .collect(),
                    dir: bin.package_dir.clone(),
                    package: bin.package.clone(),
                    claims,
                });
            }
        }
    }
    if jobs.is_empty() {
        return Err(RunnerError::NothingToRun(options.filters.clone()));
    }
    Ok(jobs)
}

fn estimate(name: &str, history: &BTreeMap<String, f64>) -> f64 {
    history.get(name).copied().unwrap_or_else(|| {
        FIRST_RUN_ESTIMATES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|(_, secs)| *secs)
            .unwrap_or(UNKNOWN_ESTIMATE)
    })
}

/// `<target>/berth-test-run`, from a test executable at `<target>/debug/deps/<exe>`.
fn state_dir(binaries: &[TestBinary]) -> PathBuf {
    binaries
        .first()
        .and_then(|b| b.exe.ancestors().nth(3))
        .map(|target| target.join("berth-test-run"))
        .unwrap_or_else(|| std::env::temp_dir().join("berth-test-run"))
}

fn read_history(path: &Path) -> BTreeMap<String, f64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunnerError {
    let what = what.into();
    move |source| RunnerError::Io { what, source }
}

/// A log file name for a job name.
fn log_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        + ".log"
}

/// Builds, plans and runs; prints every test's output and the summary. Returns whether every
/// test passed (or skipped itself).
pub fn run(options: &Options) -> Result<bool, RunnerError> {
    let cargo_bin = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let binaries = cargo::build(&cargo_bin, &options.packages)?;
    let state = state_dir(&binaries);
    let history_path = state.join("durations.json");
    let history = read_history(&history_path);
    let jobs = plan(&binaries, options, &history)?;
    let order = schedule::start_order(&jobs.iter().map(|j| j.estimate).collect::<Vec<_>>());
    if options.list {
        println!(
            "{} jobs, {} lane(s), in start order:",
            jobs.len(),
            options.lanes
        );
        for &i in &order {
            let j = &jobs[i];
            println!(
                "  ~{:>5.0} s  {}  [{}]",
                j.estimate,
                j.name,
                describe_claims(&j.claims)
            );
        }
        return Ok(true);
    }

    let logs = state.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)
        .map_err(io_error(format!("cannot create {}", logs.display())))?;
    child::catch_interrupts();
    println!(
        "berth-test-run: {} tests on {} lane(s); logs in {}",
        jobs.len(),
        options.lanes,
        logs.display()
    );
    for e in exclusive::EXCLUSIVE {
        for j in jobs.iter().filter(|j| j.name.starts_with(e.test)) {
            println!("  exclusive: {} holds {} alone", j.name, e.resource);
        }
    }

    let mut scheduler = schedule::Scheduler::new(
        options.lanes,
        jobs.iter().map(|j| j.claims.clone()).collect(),
        order,
    );
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    let mut started_order: Vec<usize> = Vec::new();
    let mut running: Vec<(usize, usize, child::Child)> = Vec::new();
    let began = Instant::now();
    let mut interrupted = false;
    loop {
        if !interrupted && child::interrupted() {
            interrupted = true;
            println!("berth-test-run: interrupted; ending the running tests");
            for (_, _, c) in &running {
                c.kill_group();
            }
            scheduler.cancel_pending();
        }
        while let Some((i, lane)) = scheduler.start_next() {
            let job = &jobs[i];
            let log = logs.join(log_name(&job.name));
            let mut command = Command::new(&job.exe);
            command
                .args(&job.args)
                .current_dir(&job.dir)
                .env("CARGO_MANIFEST_DIR", &job.dir)
                .env("CARGO_PKG_NAME", &job.package);
            let start = began.elapsed();
            let alongside: Vec<&str> = running
                .iter()
                .map(|(o, _, _)| jobs[*o].name.as_str())
                .collect();
            println!(
                "[{:>6.1} s] lane {lane}: start {}{}",
                start.as_secs_f64(),
                job.name,
                if alongside.is_empty() {
                    String::new()
                } else {
                    format!(" (alongside {})", alongside.join(", "))
                }
            );
            started_order.push(i);
            match child::Child::spawn(command, &log) {
                Ok(c) => running.push((i, lane, c)),
                Err(e) => {
                    scheduler.finished(i, lane);
                    outcomes[i] = Some(Outcome {
                        name: job.name.clone(),
                        lane,
                        start,
                        wall: Duration::ZERO,
                        cpu: Duration::ZERO,
                        verdict: Verdict::Failed(format!("cannot start: {e}")),
                        log,
                    });
                }
            }
        }
        if running.is_empty() && (interrupted || scheduler.pending() == 0) {
            break;
        }
        let mut k = 0;
        while k < running.len() {
            let c = &running[k].2;
            let guard_hit = c.started().elapsed() >= options.guard;
            if guard_hit {
                c.kill_group();
            }
            let ended = c.try_end().map_err(io_error("wait4"))?;
            let Some(ended) = ended else {
                k += 1;
                continue;
            };
            let (i, lane, c) = running.swap_remove(k);
            scheduler.finished(i, lane);
            let job = &jobs[i];
            let log = logs.join(log_name(&job.name));
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            let verdict = if guard_hit {
                Verdict::HangGuard(options.guard)
            } else if ended.status.success() {
                if report::says_skipped(&output) {
                    Verdict::Skipped
                } else {
                    Verdict::Passed
                }
            } else {
                Verdict::Failed(ended.status.to_string())
            };
            let outcome = Outcome {
                name: job.name.clone(),
                lane,
                start: c.started().duration_since(began),
                wall: ended.wall,
                cpu: ended.cpu,
                verdict,
                log,
            };
            print_block(&outcome, &output);
            outcomes[i] = Some(outcome);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = began.elapsed();

    // In start order; what never started comes last.
    let mut table: Vec<Outcome> = started_order
        .iter()
        .filter_map(|&i| outcomes[i].clone())
        .collect();
    for (i, o) in outcomes.iter().enumerate() {
        if o.is_none() {
            table.push(Outcome {
                name: jobs[i].name.clone(),
                lane: 0,
                start: Duration::ZERO,
                wall: Duration::ZERO,
                cpu: Duration::ZERO,
                verdict: Verdict::NotRun,
                log: PathBuf::new(),
            });
        }
    }
    println!("\n==== berth-test-run summary ====");
    print!("{}", report::summary(&table, options.lanes, wall));
    let failed: Vec<&Outcome> = table
        .iter()
        .filter(|o| matches!(o.verdict, Verdict::Failed(_) | Verdict::HangGuard(_)))
        .collect();
    for o in &failed {
        println!(
            "FAILED {} ({}): output in {}",
            o.name,
            describe(&o.verdict),
            o.log.display()
        );
        if let Ok(text) = std::fs::read_to_string(&o.log) {
            for line in text.lines().filter(|l| l.contains("kept in")) {
                println!("    {}", line.trim());
            }
        }
    }

    // Durations for the next run's order (passed tests only: a failure's time says little).
    let mut history = history;
    for o in table.iter().filter(|o| o.verdict.ok()) {
        history.insert(o.name.clone(), (o.wall.as_secs_f64() * 10.0).round() / 10.0);
    }
    if let Ok(text) = serde_json::to_string_pretty(&history) {
        let _ = std::fs::write(&history_path, text + "\n");
    }
    Ok(!interrupted && table.iter().all(|o| o.verdict.ok()))
}

/// `a (alone), b (shared)`.
fn describe_claims(claims: &[schedule::Claim]) -> String {
    claims
        .iter()
        .map(|c| {
            format!(
                "{} ({})",
                c.resource,
                if c.exclusive { "alone" } else { "shared" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Failed(status) => status.clone(),
        Verdict::HangGuard(guard) => {
            format!("killed by the runner's {} s hang guard", guard.as_secs())
        }
        other => format!("{other:?}"),
    }
}

/// A finished test's output between a header and a footer line.
fn print_block(o: &Outcome, output: &str) {
    let head = format!(
        "---- {} {} (lane {}, {:.1} s, CPU {:.1} s) ",
        match &o.verdict {
            Verdict::Passed => "ok".to_string(),
            Verdict::Skipped => "skipped".to_string(),
            other => format!("FAILED: {}", describe(other)),
        },
        o.name,
        o.lane,
        o.wall.as_secs_f64(),
        o.cpu.as_secs_f64()
    );
    println!("{head:-<100}");
    print!("{output}");
    if !output.ends_with('\n') && !output.is_empty() {
        println!();
    }
    println!("---- end of {} {:-<80}", o.name, "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_prefer_history_then_hints() {
        let mut history = BTreeMap::new();
        history.insert("boot::x".to_string(), 12.5);
        assert_eq!(estimate("boot::x", &history), 12.5);
        assert_eq!(estimate("uefi::y", &history), 150.0);
        assert_eq!(estimate("nope::z", &history), UNKNOWN_ESTIMATE);
    }

    #[test]
    fn log_names_are_plain() {
        assert_eq!(log_name("p lib (unit tests)"), "p_lib__unit_tests_.log");
        assert_eq!(log_name("boot::a_b"), "boot__a_b.log");
    }

    #[test]
    fn state_dir_is_in_the_target_directory() {
        let bin = TestBinary {
            name: "boot".into(),
            kind: Kind::Integration,
            exe: PathBuf::from("/t/debug/deps/boot-123"),
            package_dir: PathBuf::from("/w/qemu-tests"),
            package: "berth-qemu-tests".into(),
        };
        assert_eq!(state_dir(&[bin]), Path::new("/t/berth-test-run"));
    }
}
