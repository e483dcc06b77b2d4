//! Golden tests of berthctl's user interface, captured before the CLI code moved into a crate
//! of its own: whatever berthctl prints must stay byte-identical unless a change is meant.
//!
//! - `help_of_every_verb`: walks the whole command tree (`berthctl --help`, its `Commands:`
//!   section, recursively) and compares every `--help` with `golden/help/<path>.txt`
//!   (`_root.txt` for the top). It also checks that every verb has at least one recorded
//!   invocation below, and every verb with `--format` a table and a JSON one (`-q` too where it
//!   exists), so a new verb or flag cannot slip past.
//! - `system_verbs_against_a_fake_init`: the `system` verbs against a fake berth-init control
//!   API served by this test (the real one exists only in a booted guest), fixed answers.
//! - `outputs_against_a_real_berthd` (root; skipped with a printed reason otherwise): tables,
//!   JSON, `-q`, plain text and typical errors of the other verbs against a berthd on a
//!   temporary root, with deterministic content (archives built in memory with fixed mtimes,
//!   so fixed digests), a busybox container, and a local docker-registry for `images pull`
//!   (skipped, visibly, when docker-registry or skopeo is missing).
//!
//! Each recorded invocation is one file, `golden/{output,system}/<case>.txt`: the command line,
//! stdout, stderr and the exit status. Volatile values (timestamps, ages, durations, pids,
//! rates, the temporary directory, the loopback registry's port, the build's revision) are
//! masked by [`normalise`] before the comparison; table cells are masked cell by cell and the
//! table re-aligned, after checking that the original was aligned the way berthctl aligns.
//!
//! A difference, a missing golden file or a stale one (no command or case produces it) fails
//! the test with a short diff. To accept the current output (new verb, intended change):
//!
//! ```text
//! BLESS=1 cargo test -p berth --test cli_golden
//! ```
//!
//! which rewrites the golden files and removes stale ones; review `git diff` before committing.
//! Sizes of `snapshots usage` come from allocated blocks: the files were made on ext4.
//!
//! Files: this one (recording, help of every verb), `goldens.rs` (comparing, masking),
//! `system.rs` (the fake berth-init), `berthd.rs` (against a real berthd).

use berth_test_support::registry as registry_server;
use berth_test_support::support;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;

const BERTHCTL: &str = env!("CARGO_BIN_EXE_berthctl");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

mod berthd;
mod goldens;
mod system;

use berthd::wait_until;
use goldens::*;

// ---------------------------------------------------------------------------------------------
// Recording invocations

/// `arg` as a shell word (for the command line at the top of a golden file).
fn shell_word(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+<>%".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// One invocation as a golden file: command line, stdout, stderr, exit status, each masked.
fn record(args: &[&str], out: &Output, literals: &[(String, &str)], volatile: bool) -> String {
    let mask = |s: &str| {
        if volatile {
            normalise(s, literals)
        } else {
            replace_literals(s, literals)
        }
    };
    let section = |bytes: &[u8]| {
        let s = mask(&String::from_utf8_lossy(bytes));
        if s.is_empty() || s.ends_with('\n') {
            s
        } else {
            s + "\n\\ no newline at end\n"
        }
    };
    let status = match out.status.code() {
        Some(c) => format!("exit {c}"),
        None => format!("{}", out.status),
    };
    let cmd: Vec<String> = args.iter().map(|a| shell_word(a)).collect();
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}--- {status}\n",
        mask(&format!("$ berthctl {}", cmd.join(" "))),
        section(&out.stdout),
        section(&out.stderr)
    )
}

/// berthctl with hidden leading options (`--address`, `--init-address`), and none of the
/// BERTH_* environment of the caller.
fn berthctl(base: &[OsString], args: &[&str]) -> Command {
    let mut c = Command::new(BERTHCTL);
    c.args(base)
        .args(args)
        .env_remove("BERTH_ADDRESS")
        .env_remove("BERTH_NAMESPACE")
        .env_remove("BERTH_INIT_ADDRESS")
        .env_remove("COLUMNS")
        .stdin(Stdio::null());
    c
}

struct Ctl {
    base: Vec<OsString>,
    /// Values of this run and their placeholders (see [`normalise`]).
    literals: Vec<(String, &'static str)>,
    /// Whether [`RULES`] apply (not to the fake init's fixed answers: only `literals`).
    volatile: bool,
    /// berthd's log, where its scheduler reports each collection.
    log: Option<PathBuf>,
    g: Goldens,
}

impl Ctl {
    fn raw(&self, args: &[&str]) -> Output {
        berthctl(&self.base, args).output().unwrap()
    }

    /// Runs and records `args` as golden case `name`.
    fn case(&mut self, name: &str, args: &[&str]) -> Output {
        let out = self.raw(args);
        let text = record(args, &out, &self.literals, self.volatile);
        self.g.check(name, &text);
        out
    }

    /// Collections berthd's scheduler has finished (`gc: collected` in its log).
    fn gc_runs(&self) -> usize {
        let log = std::fs::read_to_string(self.log.as_ref().unwrap()).unwrap_or_default();
        log.matches("gc: collected").count() + log.matches("gc: collection failed").count()
    }

    /// [`Ctl::case`] for a verb that asks berthd's scheduler for a collection (a delete, an
    /// import, a pull): waits until that collection is over, so it cannot race with the next
    /// cases (what they list, or what an explicit `gc` reports).
    fn case_gc(&mut self, name: &str, args: &[&str]) -> Output {
        let before = self.gc_runs();
        let out = self.case(name, args);
        assert!(out.status.success(), "{name}: {out:?}");
        wait_until("berthd's requested collection", || self.gc_runs() > before);
        out
    }

    /// Runs `args` unrecorded; they must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.raw(args);
        assert!(
            out.status.success(),
            "berthctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Help text of every verb, and coverage of the recorded invocations

fn help_of(path: &[String]) -> String {
    let out = berthctl(&[], &path.iter().map(String::as_str).collect::<Vec<_>>())
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "berthctl {path:?} --help: {out:?}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The names in the `Commands:` section of a help text, `help` excepted.
fn subcommands(help: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == "Commands:" {
            inside = true;
        } else if inside {
            let Some(rest) = line.strip_prefix("  ") else {
                break;
            };
            if rest.starts_with(' ') {
                continue; // a wrapped description
            }
            let name = rest.split_whitespace().next().unwrap_or_default();
            if name != "help" {
                names.push(name.to_string());
            }
        }
    }
    names
}

/// Every command path (`[]` is berthctl itself) with its help text.
fn command_tree() -> BTreeMap<Vec<String>, String> {
    let mut tree = BTreeMap::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let help = help_of(&path);
        for sub in subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        tree.insert(path, help);
    }
    tree
}

/// Verbs with no recorded invocation, and why. Empty: every verb has at least one.
const VERBS_NOT_RECORDED: &[(&str, &str)] = &[
    (
        "pki ca",
        "fresh keys, serials and dates every run: berth/tests/remote_ctl.rs runs every pki verb",
    ),
    ("pki node", "as pki ca"),
    ("pki client", "as pki ca"),
    ("pki show", "as pki ca"),
    ("pki fingerprint", "as pki ca"),
    (
        "config contexts",
        "a contexts file of the tester's: berth/tests/remote_ctl.rs runs the contexts verbs on one of its own",
    ),
    ("config use-context", "as config contexts"),
    ("config add-context", "as config contexts"),
];

#[test]
fn help_of_every_verb() {
    let t = Instant::now();
    let tree = command_tree();
    let mut g = Goldens::new("help");
    for (path, help) in &tree {
        let name = if path.is_empty() {
            "_root".to_string()
        } else {
            path.join("_")
        };
        g.check(&name, help);
    }

    // Every recorded invocation, by command path: the first line of each golden file.
    let mut invocations: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    let paths: BTreeSet<String> = tree.keys().map(|p| p.join(" ")).collect();
    for sub in ["output", "system"] {
        for e in std::fs::read_dir(Path::new(GOLDEN).join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let Some(cmd) = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("$ berthctl "))
            else {
                panic!("{}: no command line at the top", e.path().display());
            };
            let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
            let n = (1..=words.len())
                .rev()
                .find(|&n| paths.contains(&words[..n].join(" ")))
                .unwrap_or(0);
            invocations
                .entry(words[..n].join(" "))
                .or_default()
                .push(words[n..].to_vec());
        }
    }
    let mut missing = Vec::new();
    for (path, help) in &tree {
        let key = path.join(" ");
        if path.is_empty() || !subcommands(help).is_empty() {
            continue;
        }
        if VERBS_NOT_RECORDED.iter().any(|(p, _)| *p == key) {
            continue;
        }
        let calls = invocations.get(&key).map(Vec::as_slice).unwrap_or_default();
        let has = |flag: &str, value: Option<&str>| {
            calls.iter().any(|c| {
                c.iter().enumerate().any(|(i, w)| {
                    w == flag && value.is_none_or(|v| c.get(i + 1).map(String::as_str) == Some(v))
                })
            })
        };
        if calls.is_empty() {
            missing.push(format!("{key}: no recorded invocation"));
        }
        if help.contains("--format <FORMAT>") {
            if !has("--format", Some("json")) {
                missing.push(format!("{key}: no `--format json` case"));
            }
            let table = calls
                .iter()
                .any(|c| !c.iter().any(|w| w == "json" || w == "-q" || w == "--quiet"));
            if !table {
                missing.push(format!("{key}: no table case"));
            }
        }
        if help.contains("-q, --quiet") && !has("-q", None) && !has("--quiet", None) {
            missing.push(format!("{key}: no `-q` case"));
        }
    }
    if !missing.is_empty() {
        g.failures.push(format!(
            "verbs without golden cases (add one in this file, or a reason to \
             VERBS_NOT_RECORDED):\n{}",
            missing.join("\n")
        ));
    }
    g.finish();
    println!(
        "help of {} command paths checked in {:?}",
        tree.len(),
        t.elapsed()
    );
}
