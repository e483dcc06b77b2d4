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

// ---------------------------------------------------------------------------------------------
// Golden files

fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The golden files of one directory under `golden/`: compared (or rewritten with BLESS=1),
/// and at the end, any file no check asked for is stale.
struct Goldens {
    sub: &'static str,
    seen: BTreeSet<String>,
    failures: Vec<String>,
}

impl Goldens {
    fn new(sub: &'static str) -> Self {
        Self {
            sub,
            seen: BTreeSet::new(),
            failures: Vec::new(),
        }
    }

    fn dir(&self) -> PathBuf {
        Path::new(GOLDEN).join(self.sub)
    }

    fn check(&mut self, name: &str, actual: &str) {
        let file = format!("{name}.txt");
        assert!(
            self.seen.insert(file.clone()),
            "two cases named {}/{file}",
            self.sub
        );
        let path = self.dir().join(&file);
        let expected = std::fs::read_to_string(&path).ok();
        if expected.as_deref() == Some(actual) {
            return;
        }
        if bless() {
            std::fs::create_dir_all(self.dir()).unwrap();
            std::fs::write(&path, actual).unwrap();
            eprintln!("BLESS: wrote {}", path.display());
            return;
        }
        self.failures.push(match expected {
            None => format!("{}/{file}: no golden file\n--- actual:\n{actual}", self.sub),
            Some(e) => format!("{}/{file} differs:\n{}", self.sub, diff(&e, actual)),
        });
    }

    /// A case that could not run here (a missing tool): its golden file is kept, not compared.
    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("SKIP: golden case {}/{name}: {why}", self.sub);
        self.seen.insert(format!("{name}.txt"));
    }

    /// Stale files, then every failure at once.
    fn finish(mut self) {
        let mut stale = Vec::new();
        for e in std::fs::read_dir(self.dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !self.seen.contains(&name) {
                stale.push(name);
            }
        }
        for name in stale {
            if bless() {
                std::fs::remove_file(self.dir().join(&name)).unwrap();
                eprintln!("BLESS: removed stale {}/{name}", self.sub);
            } else {
                self.failures.push(format!(
                    "{}/{name}: stale golden file (no command or case produces it)",
                    self.sub
                ));
            }
        }
        assert!(
            self.failures.is_empty(),
            "{} golden mismatch(es) in {}/ (BLESS=1 cargo test -p berth --test cli_golden \
             accepts the current output):\n\n{}",
            self.failures.len(),
            self.sub,
            self.failures.join("\n\n")
        );
    }
}

/// A unified-ish diff: the first differing region, with two lines of context around it.
fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.split('\n').collect();
    let a: Vec<&str> = actual.split('\n').collect();
    let prefix = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    let max_suffix = e.len().min(a.len()) - prefix;
    let suffix = e
        .iter()
        .rev()
        .zip(a.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = format!("@@ line {} @@\n", prefix + 1);
    for l in &e[prefix.saturating_sub(2)..prefix] {
        out.push_str(&format!(" {l}\n"));
    }
    let mut side = |sign: char, lines: &[&str]| {
        for l in lines.iter().take(30) {
            out.push_str(&format!("{sign}{l}\n"));
        }
        if lines.len() > 30 {
            out.push_str(&format!("{sign}… {} more lines\n", lines.len() - 30));
        }
    };
    side('-', &e[prefix..e.len() - suffix]);
    side('+', &a[prefix..a.len() - suffix]);
    for l in e[e.len() - suffix..].iter().take(2) {
        out.push_str(&format!(" {l}\n"));
    }
    if expected.trim_end() == actual.trim_end() {
        out.push_str("(only trailing newlines differ)\n");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Masking of volatile values

/// `(column, regex, replacement)`: `None` applies to every plain line and every table cell,
/// `Some(headers)` only to the cells of table columns whose header matches.
const RULES: &[(Option<&str>, &str, &str)] = &[
    // `version`: the build's source revision (BERTH_REVISION).
    (None, r"^(  Revision: ).+$", "${1}<REV>"),
    // `events`: the unix-nanosecond timestamp that starts each line.
    (None, r"^\d{16,20} ", "<NANOS> "),
    // JSON: timestamps, measured durations, pids; the cgroup counters of `tasks metrics`.
    (
        None,
        r#""(created_at|updated_at|created_ns|updated_ns|expires_at|exited_at|timestamp|duration_ns|millis|pid|usage|peak|anon|file|kernel|kernel_stack|slab|sock|shmem|file_mapped|file_dirty|file_writeback|pgfault|pgmajfault|cache|rss|rss_huge|mapped_file|dirty|writeback|usage_usec|user_usec|system_usec|nr_periods|nr_throttled|throttled_usec)":( ?)\d+"#,
        r#""$1":$2<N>"#,
    ),
    // Measured durations and rates in text: `in 3 ms`, `in 0.05s`, `1.2 MiB/s`.
    (None, r"\bin \d+ ms\b", "in <N> ms"),
    (None, r"\bin \d+\.\d+s\b", "in <SECS>s"),
    (None, r"\b\d+(\.\d+)? (B|KiB|MiB|GiB)/s\b", "<RATE>/s"),
    // The loopback registry's port (a free one, picked at run time).
    (None, r"127\.0\.0\.1:\d+", "127.0.0.1:<PORT>"),
    // `images mount`: the view key hashes the (temporary) mount point.
    (None, r"\bmount-[0-9a-f]{16}\b", "mount-<HASH>"),
    // The zfs plugin's reason depends on the host (module loaded or not).
    (
        None,
        r"the zfs kernel module is not loaded \(/sys/module/zfs is missing\)|no parent dataset configured: set dataset in \[plugins\.[^\]]*\]",
        "<ZFS UNAVAILABLE ON THIS HOST>",
    ),
    // Table cells: ages, relative expiry, pids, cgroup counters.
    (Some("CREATED|AGE"), r"^\d+[smhd]$", "<AGE>"),
    (Some("EXPIRES"), r"^in \d+s$", "in <N>s"),
    (Some("PID"), r"^\d+$", "<PID>"),
    (Some("VALUE"), r"^\d+$", "<N>"),
];

fn rules() -> &'static [(Option<Regex>, Regex, &'static str)] {
    static R: OnceLock<Vec<(Option<Regex>, Regex, &'static str)>> = OnceLock::new();
    R.get_or_init(|| {
        RULES
            .iter()
            .map(|(col, re, with)| {
                (
                    col.map(|c| Regex::new(&format!("^({c})$")).unwrap()),
                    Regex::new(re).unwrap(),
                    *with,
                )
            })
            .collect()
    })
}

/// Masks the volatile values of berthctl's output: the `literals` of this run first (the
/// test's directory as `<TMP>`, the containers' namespace as `<NS>`), then [`RULES`].
///
/// Tables (a header line of upper-case column names, rows aligned under it) are masked cell
/// by cell and re-aligned the way berthctl aligns them, so masking a value whose width varies
/// ("9s" / "10s") keeps the rest of the table comparable, alignment included. A table that is
/// not aligned that way is left as it is, to fail the comparison.
fn normalise(text: &str, literals: &[(String, &str)]) -> String {
    let mask = |s: &str, column: Option<&str>| -> String {
        let mut s = replace_literals(s, literals);
        for (col, re, with) in rules() {
            let applies = match (col, column) {
                (None, _) => true,
                (Some(c), Some(h)) => c.is_match(h),
                (Some(_), None) => false,
            };
            if applies {
                s = re.replace_all(&s, *with).into_owned();
            }
        }
        s
    };
    let header_re = Regex::new(r"^[A-Z#][A-Z_#]*( {2,}[A-Z#][A-Z_#]*)*$").unwrap();
    let word = Regex::new(r"\S+").unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !header_re.is_match(lines[i]) {
            out.push(mask(lines[i], None));
            i += 1;
            continue;
        }
        // Column names and where each starts (chars).
        let header = lines[i];
        let mut names = Vec::new();
        let mut starts = Vec::new();
        for m in word.find_iter(header) {
            names.push(m.as_str());
            starts.push(header[..m.start()].chars().count());
        }
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut j = i + 1;
        while j < lines.len() && !lines[j].is_empty() {
            let chars: Vec<char> = lines[j].chars().collect();
            let aligned = starts[1..]
                .iter()
                .all(|&s| chars.len() <= s - 2 || (chars[s - 2] == ' ' && chars[s - 1] == ' '));
            if !aligned {
                break;
            }
            let cells = (0..starts.len())
                .map(|c| {
                    let from = starts[c].min(chars.len());
                    let to = starts
                        .get(c + 1)
                        .map_or(chars.len(), |&e| e.min(chars.len()));
                    chars[from..to]
                        .iter()
                        .collect::<String>()
                        .trim_end()
                        .to_string()
                })
                .collect();
            rows.push(cells);
            j += 1;
        }
        let raw = lines[i..j].join("\n");
        if align(&names, &rows) != raw {
            // Not aligned as berthctl aligns: keep it, and let the comparison show it.
            for l in &lines[i..j] {
                out.push(mask(l, None));
            }
        } else {
            let masked: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    r.iter()
                        .zip(&names)
                        .map(|(c, h)| mask(c, Some(h)))
                        .collect()
                })
                .collect();
            out.extend(align(&names, &masked).split('\n').map(str::to_string));
        }
        i = j;
    }
    out.join("\n")
}

fn replace_literals(s: &str, literals: &[(String, &str)]) -> String {
    let mut s = s.to_string();
    for (value, with) in literals {
        s = s.replace(value.as_str(), with);
    }
    s
}

/// berthctl's table layout (`ctl::table`): left-aligned, two spaces between columns, no
/// trailing blanks; without the final newline.
fn align(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            l.push_str(c);
            if i + 1 < n {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        l.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

#[test]
fn normalise_masks_cells_and_realigns() {
    let t = "ID       CREATED  LABELS\nlong-id  10s      a=b\nx        9s\n";
    assert_eq!(
        normalise(t, &[]),
        "ID       CREATED  LABELS\nlong-id  <AGE>    a=b\nx        <AGE>\n"
    );
    // A misaligned table is kept as it is.
    let bad = "ID  CREATED\nlong-id 10s\n";
    assert_eq!(normalise(bad, &[]), bad);
    assert_eq!(
        normalise(
            "{\n  \"created_at\": 1700000000000000000,\n  \"size\": 12\n}",
            &[]
        ),
        "{\n  \"created_at\": <N>,\n  \"size\": 12\n}"
    );
}

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

// ---------------------------------------------------------------------------------------------
// `system` verbs against a fake berth-init

mod fake_init {
    use std::sync::Arc;

    use berth_api::proto::{system, system_ttrpc};
    use ttrpc::r#async::{ServerStreamSender, TtrpcContext};

    struct FakeInit;

    fn record(
        seq: u64,
        facility: u32,
        severity: u32,
        name: &str,
        pid: u32,
        message: &str,
    ) -> system::LogRecord {
        system::LogRecord {
            seq,
            time_us: 1_700_000_000_000_000 + seq as i64 * 1000,
            uptime_us: 3_177_726 + seq * 1_000_250,
            facility,
            severity,
            origin: if name == "kernel" { "kmsg" } else { "service" }.into(),
            name: name.into(),
            pid,
            message: message.into(),
            ..Default::default()
        }
    }

    /// The log: fixed records, and one that echoes the request (so the flags' plumbing shows).
    fn records(req: &system::LogRequest) -> Vec<system::LogRecord> {
        vec![
            record(1, 0, 6, "kernel", 0, "Linux version 6.1.0 (fake)"),
            record(2, 3, 6, "berthd", 312, "serving /run/berth/berthd.sock"),
            record(3, 3, 3, "app", 400, "failed: \"quoted\" and ünïcode"),
            record(
                4,
                3,
                7,
                "init",
                1,
                &format!(
                    "request: lines={} min_severity={:?} source={:?}",
                    req.lines, req.min_severity, req.source
                ),
            ),
        ]
    }

    #[async_trait::async_trait]
    impl system_ttrpc::System for FakeInit {
        async fn status(
            &self,
            _ctx: &TtrpcContext,
            _req: system::StatusRequest,
        ) -> ttrpc::Result<system::StatusResponse> {
            let stage = |name: &str, start_us, duration_us, done| system::Stage {
                name: name.into(),
                start_us,
                duration_us,
                done,
                ..Default::default()
            };
            let service = |name: &str, state: &str, pid, restarts| system::Service {
                name: name.into(),
                state: state.into(),
                pid,
                restarts,
                ..Default::default()
            };
            let slot =
                |slot: &str, generation, version: &str, booted, trial, bad| system::BootSlot {
                    file: format!("\\EFI\\Linux\\berth-{slot}.efi"),
                    slot: slot.into(),
                    generation,
                    version: version.into(),
                    booted,
                    trial,
                    bad,
                    ..Default::default()
                };
            Ok(system::StatusResponse {
                version: "0.1.0".into(),
                uptime_us: 123_456_789,
                ready: true,
                ready_us: 4_812_345,
                stages: vec![
                    stage("kernel+initramfs", 0, 4_200_000, true),
                    stage("mounts", 4_200_000, 5_900, true),
                    stage("modules", 4_205_900, 0, false),
                    stage("network", 4_300_000, 85, true),
                    stage("services", 4_400_000, 400_300, true),
                ],
                services_known: true,
                services: vec![
                    service("berthd", "running", 312, 0),
                    service("app", "backoff", 0, 3),
                ],
                init_rss_bytes: 2_500_000,
                log_bytes: 70_000,
                log_dropped: 2,
                boot: Some(system::BootInfo {
                    uefi: true,
                    firmware: "EDK II 1.00".into(),
                    loader: "systemd-boot 252".into(),
                    stub: "systemd-stub 252".into(),
                    selected: "berth-b.efi".into(),
                    outcome: "trial of b, booted".into(),
                    slots: vec![
                        slot("a", 3, "0.1.0", false, false, false),
                        slot("b", 4, "0.2.0", true, true, false),
                        slot("c", 2, "0.0.9", false, false, true),
                    ],
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
        }

        async fn log(
            &self,
            _ctx: &TtrpcContext,
            req: system::LogRequest,
        ) -> ttrpc::Result<system::LogResponse> {
            Ok(system::LogResponse {
                records: records(&req),
                ..Default::default()
            })
        }

        async fn follow_log(
            &self,
            _ctx: &TtrpcContext,
            req: system::LogRequest,
            s: ServerStreamSender<system::LogRecord>,
        ) -> ttrpc::Result<()> {
            for r in records(&req) {
                s.send(&r).await?;
            }
            Ok(())
        }

        async fn reboot(
            &self,
            _ctx: &TtrpcContext,
            _req: system::PowerRequest,
        ) -> ttrpc::Result<system::PowerResponse> {
            Ok(system::PowerResponse::new())
        }

        async fn poweroff(
            &self,
            _ctx: &TtrpcContext,
            _req: system::PowerRequest,
        ) -> ttrpc::Result<system::PowerResponse> {
            Ok(system::PowerResponse::new())
        }

        async fn restart_service(
            &self,
            _ctx: &TtrpcContext,
            req: system::RestartServiceRequest,
        ) -> ttrpc::Result<system::RestartServiceResponse> {
            if req.name == "berthd" {
                Ok(system::RestartServiceResponse::new())
            } else {
                Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::NOT_FOUND,
                    format!("no service {:?}", req.name),
                )))
            }
        }

        async fn upgrade_begin(
            &self,
            _ctx: &TtrpcContext,
            _req: system::UpgradeBeginRequest,
        ) -> ttrpc::Result<system::UpgradeBeginResponse> {
            Ok(system::UpgradeBeginResponse::new())
        }

        async fn upgrade_write(
            &self,
            _ctx: &TtrpcContext,
            _req: system::UpgradeWriteRequest,
        ) -> ttrpc::Result<system::UpgradeWriteResponse> {
            Ok(system::UpgradeWriteResponse::new())
        }

        async fn upgrade_commit(
            &self,
            _ctx: &TtrpcContext,
            _req: system::UpgradeCommitRequest,
        ) -> ttrpc::Result<system::UpgradeCommitResponse> {
            Ok(system::UpgradeCommitResponse {
                slot: "a".into(),
                generation: 5,
                file: "\\EFI\\Linux\\berth-a.efi".into(),
                version: "0.2.0".into(),
                ..Default::default()
            })
        }

        async fn reload(
            &self,
            _ctx: &TtrpcContext,
            _req: system::ReloadRequest,
        ) -> ttrpc::Result<system::ReloadResponse> {
            Ok(reload_report())
        }

        async fn node_config_list(
            &self,
            _ctx: &TtrpcContext,
            _req: system::NodeConfigListRequest,
        ) -> ttrpc::Result<system::NodeConfigListResponse> {
            let file = |path: &str, size, mode| system::NodeFileInfo {
                path: path.into(),
                size,
                mode,
                modified_us: 1_700_000_000_000_000,
                ..Default::default()
            };
            Ok(system::NodeConfigListResponse {
                files: vec![
                    file("certs.d/_default/hosts.toml", 36, 0o644),
                    file("node.toml", 28, 0o644),
                    file("remote/ca.pem", 579, 0o600),
                    file("remote/node.key", 241, 0o600),
                    file("remote/node.pem", 660, 0o600),
                ],
                ..Default::default()
            })
        }

        async fn node_config_get(
            &self,
            _ctx: &TtrpcContext,
            req: system::NodeConfigGetRequest,
        ) -> ttrpc::Result<system::NodeConfigGetResponse> {
            let status = |code, m: String| Err(ttrpc::Error::RpcStatus(ttrpc::get_status(code, m)));
            match req.path.as_str() {
                "node.toml" => Ok(system::NodeConfigGetResponse {
                    file: protobuf::MessageField::some(system::NodeFile {
                        path: req.path,
                        content: b"[remote]\nkey = \"\"\"<private key redacted>\"\"\"\n".to_vec(),
                        ..Default::default()
                    }),
                    redacted: true,
                    ..Default::default()
                }),
                "remote/node.key" => status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    "remote/node.key: private keys are never read back (put a new one to replace it)".into(),
                ),
                other => status(ttrpc::Code::NOT_FOUND, format!("{other}: no such file")),
            }
        }

        async fn node_config_put(
            &self,
            _ctx: &TtrpcContext,
            req: system::NodeConfigPutRequest,
        ) -> ttrpc::Result<system::NodeConfigPutResponse> {
            if let Some(f) = req.files.iter().find(|f| f.content.starts_with(b"bad")) {
                return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("{}: line 1: invalid TOML: expected `=`", f.path),
                )));
            }
            Ok(system::NodeConfigPutResponse {
                written: req.files.iter().map(|f| f.path.clone()).collect(),
                removed: req.remove.clone(),
                reload: protobuf::MessageField::from_option(req.reload.then(reload_report)),
                ..Default::default()
            })
        }
    }

    fn reload_report() -> system::ReloadResponse {
        system::ReloadResponse {
            applied: vec![
                "remote API: credentials and deny list reloaded (1 denied serial(s))".into(),
                "berthd: asked to reload its configuration (SIGHUP)".into(),
            ],
            errors: vec!["/var/etc/berth/node.toml:3: key time.wait_secs: invalid type: string \"x\", expected u64; key ignored, using the default or an earlier layer's value".into()],
            ..Default::default()
        }
    }

    /// Serves the fake on `path` in a thread of its own until the returned sender is dropped.
    pub fn serve(path: &std::path::Path) -> tokio::sync::oneshot::Sender<()> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::bind(&path).unwrap();
                let mut server = ttrpc::r#async::Server::new()
                    .add_listener(listener.into())
                    .register_service(system_ttrpc::create_system(Arc::new(FakeInit)));
                server.start().await.unwrap();
                ready_tx.send(()).unwrap();
                let _ = rx.await;
                let _ = server.shutdown().await;
            });
        });
        ready_rx.recv().unwrap();
        tx
    }
}

#[test]
fn system_verbs_against_a_fake_init() {
    let dir = tempfile::Builder::new()
        .prefix("berth-golden-system-")
        .tempdir()
        .unwrap();
    let tmp = dir.path().display().to_string();
    let sock = dir.path().join("init.sock");
    let _server = fake_init::serve(&sock);
    let mut c = Ctl {
        base: vec!["--init-address".into(), sock.clone().into()],
        literals: vec![(tmp.clone(), "<TMP>")],
        volatile: false,
        log: None,
        g: Goldens::new("system"),
    };
    c.case("status", &["system", "status"]);
    c.case("status_json", &["system", "status", "--format", "json"]);
    c.case("log", &["system", "log"]);
    c.case("log_json", &["system", "log", "--format", "json"]);
    c.case(
        "log_filters",
        &["system", "log", "--lines", "5", "-p", "err", "-s", "berthd"],
    );
    c.case("log_follow", &["system", "log", "-f"]);
    c.case(
        "log_follow_json",
        &["system", "log", "-f", "--format", "json"],
    );
    c.case("reboot", &["system", "reboot"]);
    c.case("poweroff", &["system", "poweroff"]);
    c.case("restart", &["system", "restart", "berthd"]);
    c.case("restart_unknown", &["system", "restart", "nope"]);
    let uki = dir.path().join("berth.efi");
    std::fs::write(&uki, b"MZ fake unified kernel image\n").unwrap();
    let uki = uki.display().to_string();
    c.case("upgrade", &["system", "upgrade", &uki]);
    c.case("upgrade_reboot", &["system", "upgrade", "--reboot", &uki]);
    c.case(
        "upgrade_missing_file",
        &["system", "upgrade", &format!("{tmp}/missing.efi")],
    );
    c.case("reload", &["system", "reload"]);
    c.case("reload_json", &["system", "reload", "--format", "json"]);
    c.case("node_config_ls", &["node", "config", "ls"]);
    c.case(
        "node_config_ls_json",
        &["node", "config", "ls", "--format", "json"],
    );
    c.case("node_config_get", &["node", "config", "get", "node.toml"]);
    c.case(
        "node_config_get_key",
        &["node", "config", "get", "remote/node.key"],
    );
    let node = dir.path().join("node.toml");
    std::fs::write(&node, "[time]\nwait_secs = 1\n").unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bad = \n").unwrap();
    let put = format!("node.toml={}", node.display());
    c.case("node_config_put", &["node", "config", "put", &put]);
    c.case(
        "node_config_put_json",
        &[
            "node",
            "config",
            "put",
            "--no-reload",
            "--format",
            "json",
            &put,
        ],
    );
    c.case(
        "node_config_put_invalid",
        &[
            "node",
            "config",
            "put",
            &format!("berthd.d/10-x.toml={}", bad.display()),
        ],
    );
    c.case(
        "node_config_rm",
        &["node", "config", "rm", "berthd.d/10-x.toml"],
    );
    c.case(
        "node_config_rm_json",
        &[
            "node",
            "config",
            "rm",
            "--no-reload",
            "--format",
            "json",
            "berthd.d/10-x.toml",
        ],
    );
    // No init listening.
    c.base = vec!["--init-address".into(), dir.path().join("none.sock").into()];
    c.case("status_no_init", &["system", "status"]);
    c.g.finish();
}

// ---------------------------------------------------------------------------------------------
// Everything else, against a real berthd

/// Stops what the test started even when it fails: tasks, containers, shims, mounts.
struct Cleanup {
    dir: PathBuf,
    namespace: String,
    socket: PathBuf,
    berthd: Option<support::Berthd>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.berthd.is_some() {
            let s = &self.socket;
            for ns in [self.namespace.as_str(), "default"] {
                let ls = support::berthctl(s, &["tasks", "ls", "-n", ns]);
                for line in String::from_utf8_lossy(&ls.stdout).lines().skip(1) {
                    if let Some(id) = line.split_whitespace().next() {
                        let _ = support::berthctl(
                            s,
                            &["tasks", "kill", "-n", ns, "-s", "KILL", "--all", id],
                        );
                        std::thread::sleep(Duration::from_millis(50));
                        let _ = support::berthctl(s, &["tasks", "rm", "-n", ns, id]);
                    }
                }
                let ls = support::berthctl(s, &["containers", "ls", "-n", ns, "-q"]);
                for id in String::from_utf8_lossy(&ls.stdout).lines() {
                    let _ = support::berthctl(s, &["containers", "rm", "-n", ns, id]);
                }
            }
        }
        self.berthd = None;
        if let Ok(nss) = std::fs::read_dir(self.dir.join("state/shims")) {
            for ns in nss.flatten() {
                for c in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                    let pid = std::fs::read_to_string(c.path().join("shim.pid"))
                        .ok()
                        .and_then(|p| p.trim().parse::<i32>().ok());
                    if let Some(pid) = pid {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
        if let Ok(m) = std::fs::read_to_string("/proc/self/mounts") {
            let base = self.dir.display().to_string();
            let mut targets: Vec<&str> = m
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with(&base))
                .collect();
            targets.reverse();
            for t in targets {
                let _ = nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// The OCI archive of the deterministic test images: `golden.test/app:v1` (two layers) and
/// `golden.test/tools:v2` (the same base layer and one of its own).
fn images_archive() -> Vec<u8> {
    let base = support::layer(&[
        ("etc/os-release", b"NAME=golden\n"),
        ("etc/motd", b"hello\n"),
    ]);
    let app = support::layer(&[("app/run", b"#!/bin/sh\necho app\n")]);
    let tools = support::layer(&[("tools/readme", b"tools\n")]);
    let mut blobs = BTreeMap::new();
    let m_app = support::manifest(&[&base, &app], &mut blobs);
    let m_tools = support::manifest(&[&base, &tools], &mut blobs);
    support::archive(
        &[
            ("golden.test/app:v1", m_app),
            ("golden.test/tools:v2", m_tools),
        ],
        &blobs,
    )
}

/// An OCI layout directory holding `manifest` as tag `v1` (for skopeo to push).
fn write_layout(dir: &Path, manifest: &[u8], blobs: &BTreeMap<String, Vec<u8>>) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": support::sha(manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"}
        }]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    for (digest, data) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        std::fs::write(dir.join("blobs/sha256").join(hex), data).unwrap();
    }
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn hosts_toml(certs: &Path, registry: &str, text: &str) {
    let d = certs.join(registry);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("hosts.toml"), text).unwrap();
}

/// Polls `f` (hang guard only).
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn outputs_against_a_real_berthd() {
    if !support::is_root() {
        eprintln!("SKIP: outputs_against_a_real_berthd needs root (berthd mounts snapshots and runs containers)");
        return;
    }
    if !Path::new(support::BUSYBOX).exists() {
        eprintln!(
            "SKIP: {} missing (Debian package busybox-static, scripts/install-deps.sh)",
            support::BUSYBOX
        );
        return;
    }
    let t = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("berth-golden-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let tmp = d.display().to_string();
    // The containers' namespace, unique to this run: it names their cgroups, which are
    // host-wide (another run of this test at the same time would collide). `<NS>` in the files.
    let ns_name = format!("ctr-{}", std::process::id());
    let ns = ns_name.as_str();

    // Registry hosts: a default mirror, a registry with every kind of setting, and (below)
    // the loopback registry of the pull cases.
    let certs = d.join("certs.d");
    hosts_toml(&certs, "_default", "server = \"http://10.0.2.2:5000\"\n");
    hosts_toml(
        &certs,
        "mirror.test",
        "server = \"https://mirror.test\"\n\
         [host.\"http://10.0.2.2:5000\"]\ncapabilities = [\"pull\", \"resolve\"]\ndial_timeout = \"500ms\"\n\
         [host.\"https://m2.test/base\"]\ncapabilities = [\"pull\"]\nskip_verify = true\noverride_path = true\n\
         [host.\"https://m3.test:8443\"]\nca = \"ca.pem\"\nclient = [[\"client.pem\", \"client.key\"], \"other.pem\"]\n\
         [host.\"https://m3.test:8443\".header]\nX-Tenant = \"golden\"\nX-Multi = [\"a\", \"b\"]\n",
    );
    let extra = format!(
        "[plugins.\"berth.registry.v1\"]\nconfig_path = \"{}\"\n\
         [plugins.\"berth.registry.v1\".auths.\"10.0.2.2:5000\"]\nusername = \"u\"\npassword = \"p\"\n",
        certs.display()
    );
    let berthd = support::try_start_berthd_config(d, &[], &extra, Some(&d.join("berthd.log")))
        .unwrap_or_else(|status| panic!("berthd exited early: {status}"));
    let socket = berthd.socket.clone();
    let mut guard = Cleanup {
        dir: d.to_path_buf(),
        namespace: ns_name.clone(),
        socket: socket.clone(),
        berthd: Some(berthd),
    };
    let mut c = Ctl {
        base: vec!["--address".into(), socket.clone().into()],
        literals: vec![(tmp.clone(), "<TMP>"), (ns_name.clone(), "<NS>")],
        volatile: true,
        log: Some(d.join("berthd.log")),
        g: Goldens::new("output"),
    };

    // --- version, plugins
    c.case("version", &["version"]);
    c.case("plugins_ls", &["plugins", "ls"]);
    c.case("plugins_ls_json", &["plugins", "ls", "--format", "json"]);
    c.case("plugins_ls_q", &["plugins", "ls", "-q"]);
    c.case(
        "plugins_ls_filter",
        &["plugins", "ls", "-f", "type==io.containerd.snapshotter.v1"],
    );

    // --- gc, first: nothing has asked the scheduler for a collection yet, so what `gc`
    // removes is exactly the garbage made here (an unreferenced blob, an expired lease).
    let junk = d.join("junk.txt");
    std::fs::write(&junk, b"garbage\n").unwrap();
    let junk = junk.display().to_string();
    let garbage = |c: &Ctl, tag: &str| {
        c.ok(&["content", "put", "-n", "garbage", &junk, "--ref", tag]);
        c.ok(&[
            "leases",
            "create",
            "-n",
            "garbage",
            tag,
            "--expires-in",
            "0s",
        ]);
    };
    garbage(&c, "junk-1");
    c.case("gc", &["gc"]);
    c.case("gc_nothing", &["gc"]);
    std::fs::write(&junk, b"more garbage\n").unwrap();
    garbage(&c, "junk-2");
    c.case("gc_json", &["gc", "--format", "json"]);

    // --- images import, ls; content
    let archive = images_archive();
    let ar = d.join("images.tar");
    std::fs::write(&ar, &archive).unwrap();
    let ar = ar.display().to_string();
    c.case("images_ls_empty", &["images", "ls"]);
    c.case_gc("images_import", &["images", "import", &ar]);
    c.case_gc(
        "images_import_json",
        &["images", "import", &ar, "--format", "json"],
    );
    c.case_gc("images_import_q", &["images", "import", &ar, "-q"]);
    c.case_gc(
        "images_import_no_unpack",
        &["images", "import", &ar, "--no-unpack", "-n", "nounpack"],
    );
    c.case("images_ls", &["images", "ls"]);
    c.case("images_ls_json", &["images", "ls", "--format", "json"]);
    c.case("images_ls_q", &["images", "ls", "-q"]);
    c.case("content_ls", &["content", "ls"]);
    c.case("content_ls_json", &["content", "ls", "--format", "json"]);
    c.case("content_ls_q", &["content", "ls", "-q"]);
    let note = d.join("note.txt");
    std::fs::write(&note, b"a note for the content store\n").unwrap();
    let note = note.display().to_string();
    let out = c.case(
        "content_put",
        &[
            "content",
            "put",
            &note,
            "--ref",
            "golden-note",
            "-l",
            "kind=note",
            "-l",
            "team=core",
        ],
    );
    let note_digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
    c.case("content_ls_labels", &["content", "ls"]);
    c.case("content_get", &["content", "get", &note_digest]);
    let got = d.join("got.txt").display().to_string();
    c.case(
        "content_get_o",
        &["content", "get", &note_digest, "-o", &got],
    );
    assert_eq!(
        std::fs::read(&got).unwrap(),
        b"a note for the content store\n"
    );
    c.case_gc("content_rm", &["content", "rm", &note_digest]);
    c.case(
        "content_get_missing",
        &["content", "get", &support::sha(b"missing")],
    );

    // --- namespaces, leases
    c.case(
        "namespaces_create",
        &[
            "namespaces",
            "create",
            "golden",
            "-l",
            "team=core",
            "-l",
            "tier=gold",
        ],
    );
    c.case("namespaces_ls", &["namespaces", "ls"]);
    c.case(
        "namespaces_ls_json",
        &["namespaces", "ls", "--format", "json"],
    );
    c.case("namespaces_ls_q", &["namespaces", "ls", "-q"]);
    c.case(
        "leases_create",
        &[
            "leases",
            "create",
            "golden-lease",
            "--expires-in",
            "1h",
            "-l",
            "purpose=golden",
        ],
    );
    c.case("leases_create_forever", &["leases", "create", "forever"]);
    c.case("leases_ls", &["leases", "ls"]);
    c.case("leases_ls_json", &["leases", "ls", "--format", "json"]);
    c.case("leases_ls_q", &["leases", "ls", "-q"]);
    c.case_gc("leases_rm", &["leases", "rm", "forever"]);
    c.case(
        "leases_create_bad_duration",
        &["leases", "create", "x", "--expires-in", "2w"],
    );

    // --- snapshots
    c.case("snapshots_ls", &["snapshots", "ls"]);
    c.case(
        "snapshots_ls_json",
        &["snapshots", "ls", "--format", "json"],
    );
    c.case("snapshots_ls_q", &["snapshots", "ls", "-q"]);
    c.case(
        "snapshots_ls_filter",
        &["snapshots", "ls", "-f", "kind==committed", "-q"],
    );
    c.case("snapshots_tree", &["snapshots", "tree"]);
    c.case("snapshots_usage", &["snapshots", "usage"]);
    c.case(
        "snapshots_usage_json",
        &["snapshots", "usage", "--format", "json"],
    );
    // A committed snapshot that is no other's parent: the top of an image's chain.
    let list: serde_json::Value =
        serde_json::from_str(&c.ok(&["snapshots", "ls", "--format", "json"])).unwrap();
    let list = list.as_array().unwrap();
    let top = list
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .filter(|k| !list.iter().any(|s| s["parent"] == *k))
        .min()
        .unwrap()
        .to_string();
    c.case(
        "snapshots_prepare",
        &["snapshots", "prepare", "golden-active", &top],
    );
    c.case(
        "snapshots_mounts",
        &["snapshots", "mounts", "golden-active"],
    );
    c.case(
        "snapshots_commit",
        &["snapshots", "commit", "golden-committed", "golden-active"],
    );
    c.case(
        "snapshots_view",
        &["snapshots", "view", "golden-view", "golden-committed"],
    );
    c.case("snapshots_tree_more", &["snapshots", "tree"]);
    c.case(
        "snapshots_usage_key",
        &["snapshots", "usage", "golden-committed"],
    );
    c.case(
        "snapshots_rm",
        &["snapshots", "rm", "golden-view", "golden-committed"],
    );
    c.case("snapshots_rm_missing", &["snapshots", "rm", "nope"]);

    // --- images mount, export, rm
    let mnt = d.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mnt = mnt.display().to_string();
    c.case(
        "images_mount",
        &["images", "mount", "golden.test/app:v1", &mnt],
    );
    assert_eq!(
        std::fs::read_to_string(format!("{mnt}/app/run")).unwrap(),
        "#!/bin/sh\necho app\n"
    );
    c.case("images_unmount", &["images", "unmount", &mnt]);
    let exported = format!("{tmp}/export.tar");
    c.case(
        "images_export",
        &["images", "export", "-o", &exported, "golden.test/app:v1"],
    );
    c.case(
        "images_export_missing",
        &[
            "images",
            "export",
            "-o",
            &exported,
            "golden.test/missing:v1",
        ],
    );
    c.case(
        "images_rm_missing",
        &["images", "rm", "golden.test/missing:v1"],
    );

    // --- hosts, config
    c.case("hosts_resolve", &["hosts", "resolve", "alpine"]);
    c.case(
        "hosts_resolve_json",
        &["hosts", "resolve", "alpine", "--format", "json"],
    );
    c.case(
        "hosts_resolve_mirrors",
        &["hosts", "resolve", "mirror.test/team/app:v1"],
    );
    c.case(
        "hosts_resolve_mirrors_json",
        &[
            "hosts",
            "resolve",
            "mirror.test/team/app:v1",
            "--format",
            "json",
        ],
    );
    c.case("hosts_resolve_invalid", &["hosts", "resolve", "UPPER/x"]);
    c.case("config_reload", &["config", "reload"]);
    c.case(
        "config_reload_json",
        &["config", "reload", "--format", "json"],
    );
    // An edit: registry credentials and the log level apply, a new root needs a restart.
    let cfg_path = d.join("berthd.toml");
    let good = std::fs::read_to_string(&cfg_path).unwrap();
    let edited = good.replace(&format!("root = \"{tmp}/root\""), "root = \"/elsewhere\"")
        + "[plugins.\"berth.registry.v1\".auths.\"quay.io\"]\nusername = \"q\"\npassword = \"p\"\n\
           [debug]\nlevel = \"debug\"\n";
    std::fs::write(&cfg_path, &edited).unwrap();
    c.case("config_reload_changes", &["config", "reload"]);
    c.case(
        "config_reload_changes_json",
        &["config", "reload", "--format", "json"],
    );
    std::fs::write(&cfg_path, good.replace("config_path", "config_pth")).unwrap();
    c.case("config_reload_invalid", &["config", "reload"]);
    std::fs::write(&cfg_path, &good).unwrap();
    c.ok(&["config", "reload"]);

    // --- images pull from a loopback docker-registry
    let pull_cases = [
        "images_pull",
        "images_pull_json",
        "images_pull_q",
        "images_pull_missing",
    ];
    let missing: Vec<&str> = ["docker-registry", "skopeo"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if missing.is_empty() {
        let reg = registry_server::start_registry(
            &d.join("registry"),
            registry_server::RegistryConfig::default(),
        )
        .unwrap();
        // An image of its own, one layer: its blobs are downloaded, not found in the store,
        // and one layer keeps the order of the progress lines fixed.
        let layer = support::layer(&[("pulled/hello", b"pulled\n")]);
        let mut blobs = BTreeMap::new();
        let manifest = support::manifest(&[&layer], &mut blobs);
        let layout = d.join("layout");
        write_layout(&layout, &manifest, &blobs);
        registry_server::push_layout(
            &layout,
            "v1",
            &format!("{}/golden/app:v1", reg.addr),
            None,
            None,
        )
        .unwrap();
        hosts_toml(
            &certs,
            "golden.test",
            &format!("server = \"http://{}\"\n", reg.addr),
        );
        let r = "golden.test/golden/app:v1";
        c.case_gc("images_pull", &["images", "pull", r, "-n", "pulled"]);
        c.case_gc(
            "images_pull_json",
            &["images", "pull", r, "--format", "json", "-n", "pulled"],
        );
        c.case_gc(
            "images_pull_q",
            &["images", "pull", r, "-q", "-n", "pulled"],
        );
        c.case(
            "images_pull_missing",
            &[
                "images",
                "pull",
                "golden.test/golden/missing:v1",
                "-n",
                "pulled",
            ],
        );
        drop(reg);
    } else {
        for name in pull_cases {
            c.g.skip(name, &format!("missing {missing:?}"));
        }
    }

    // --- containers and tasks (busybox, in namespace `ns`: its digests depend on the host's
    // busybox, so it never shows in the listings above)
    let bb = d.join("busybox.tar");
    std::fs::write(&bb, support::busybox_archive()).unwrap();
    let before = c.gc_runs();
    c.ok(&["images", "import", "-n", ns, bb.to_str().unwrap()]);
    wait_until("berthd's requested collection", || c.gc_runs() > before);
    // One namespace flag, wherever it stands: `snapshots` once had its own `-n` before `ls`
    // and ignored the global one (the keys depend on the host's busybox: compared, not
    // recorded).
    let in_ns = c.ok(&["snapshots", "-n", ns, "ls", "-q"]);
    assert!(!in_ns.is_empty() && in_ns != c.ok(&["snapshots", "ls", "-q"]));
    assert_eq!(c.ok(&["snapshots", "ls", "-q", "-n", ns]), in_ns);
    assert_eq!(c.ok(&["-n", ns, "snapshots", "ls", "-q"]), in_ns);
    // `events` around a `run --rm`. Nothing says when the subscription is in place, so a
    // capture that missed the first event (a slow start) is tried again.
    let run_rm = [
        "run",
        "-n",
        ns,
        "--rm",
        "--name",
        "once",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ];
    let mut attempts = 0;
    let (run, events) = loop {
        attempts += 1;
        let child = berthctl(&c.base, &["events"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let run = c.raw(&run_rm);
        std::thread::sleep(Duration::from_millis(300));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let events = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
        let complete = events.contains("/containers/create {\"id\":\"once\"")
            && events.contains("/containers/delete {\"id\":\"once\"}");
        if complete || attempts == 3 {
            break (run, events);
        }
        eprintln!("events: capture {attempts} incomplete, again:\n{events}");
    };
    let text = record(&run_rm, &run, &c.literals, true);
    c.g.check("run_rm", &text);
    let text = format!(
        "$ berthctl events\n(stopped with SIGTERM after `run --rm --name once`)\n--- stdout\n{}",
        normalise(&events, &c.literals)
    );
    c.g.check("events", &text);
    c.case(
        "run_d",
        &[
            "run",
            "-n",
            ns,
            "-d",
            "--name",
            "golden",
            "--memory",
            "64M",
            "--cpus",
            "0.5",
            "--pids-limit",
            "100",
            "busybox",
            "sh",
            "-c",
            "echo line one; echo line two; exec sleep 1000",
        ],
    );
    wait_until("the container's log", || {
        c.ok(&["tasks", "logs", "-n", ns, "golden"]) == "line one\nline two\n"
    });
    c.case("containers_ls", &["containers", "ls", "-n", ns]);
    c.case("containers_ls_q", &["containers", "ls", "-n", ns, "-q"]);
    c.case(
        "containers_info",
        &["containers", "info", "-n", ns, "golden"],
    );
    c.case(
        "containers_info_missing",
        &["containers", "info", "-n", ns, "nope"],
    );
    c.case("tasks_ls", &["tasks", "ls", "-n", ns]);
    c.case("tasks_ps", &["tasks", "ps", "-n", ns, "golden"]);
    c.case("tasks_ps_missing", &["tasks", "ps", "-n", ns, "nope"]);
    // Stdio over the API: the refusals (a live attach has no fixed output to record).
    c.case(
        "tasks_attach_missing",
        &["tasks", "attach", "-n", ns, "nope"],
    );
    c.case(
        "tasks_attach_no_tty",
        &["tasks", "attach", "-n", ns, "-t", "golden"],
    );
    // Which statistics there are depends on the host's cgroup version (v1 or v2 names):
    // one pair of golden files per version, and a version with none yet is skipped.
    let m: serde_json::Value =
        serde_json::from_str(&c.ok(&["tasks", "metrics", "-n", ns, "--format", "json", "golden"]))
            .unwrap();
    let version = m["cgroup_version"].as_u64().unwrap();
    for v in [1, 2] {
        for (suffix, args) in [
            ("", &["tasks", "metrics", "-n", ns, "golden"][..]),
            (
                "_json",
                &["tasks", "metrics", "-n", ns, "--format", "json", "golden"][..],
            ),
        ] {
            let name = format!("tasks_metrics_cgroup_v{v}{suffix}");
            let golden = c.g.dir().join(format!("{name}.txt"));
            if v != version {
                c.g.skip(&name, &format!("this host has cgroup v{version}"));
            } else if !golden.exists() && !bless() {
                c.g.skip(
                    &name,
                    "no golden file for this cgroup version yet (BLESS=1 makes it)",
                );
            } else {
                c.case(&name, args);
            }
        }
    }
    c.case(
        "tasks_metrics_bad_format",
        &["tasks", "metrics", "-n", ns, "--format", "xml", "golden"],
    );
    c.case("tasks_logs", &["tasks", "logs", "-n", ns, "golden"]);
    c.case(
        "tasks_logs_tail",
        &["tasks", "logs", "-n", ns, "--tail", "1", "golden"],
    );
    c.case(
        "tasks_exec",
        &[
            "tasks",
            "exec",
            "-n",
            ns,
            "--exec-id",
            "e1",
            "golden",
            "sh",
            "-c",
            "echo in exec; exit 4",
        ],
    );
    c.case("tasks_pause", &["tasks", "pause", "-n", ns, "golden"]);
    c.case("tasks_ls_paused", &["tasks", "ls", "-n", ns]);
    c.case("tasks_resume", &["tasks", "resume", "-n", ns, "golden"]);
    c.case(
        "containers_rm_with_task",
        &["containers", "rm", "-n", ns, "golden"],
    );
    c.case(
        "tasks_kill",
        &["tasks", "kill", "-n", ns, "-s", "KILL", "golden"],
    );
    wait_until("the task to stop", || {
        c.ok(&["tasks", "ls", "-n", ns]).contains("stopped")
    });
    c.case("tasks_ls_stopped", &["tasks", "ls", "-n", ns]);
    c.case("tasks_rm", &["tasks", "rm", "-n", ns, "golden"]);
    c.case("containers_rm", &["containers", "rm", "-n", ns, "golden"]);
    c.case("tasks_ls_none", &["tasks", "ls", "-n", ns]);
    c.case(
        "tasks_kill_bad_signal",
        &["tasks", "kill", "-n", ns, "-s", "NOPE", "golden"],
    );
    c.case(
        "run_missing_image",
        &["run", "-n", ns, "--rm", "no-such-image", "true"],
    );

    // --- rm, namespaces rm
    c.case_gc("images_rm", &["images", "rm", "golden.test/tools:v2"]);
    c.case(
        "images_rm_sync",
        &[
            "images",
            "rm",
            "--sync",
            "-n",
            "nounpack",
            "golden.test/tools:v2",
        ],
    );
    c.case("namespaces_rm_not_empty", &["namespaces", "rm", ns]);
    c.case("namespaces_rm", &["namespaces", "rm", "golden"]);

    // --- usage errors and an unreachable berthd
    c.case("usage_bad_format", &["images", "ls", "--format", "xml"]);
    c.case("usage_unknown_verb", &["imags", "ls"]);
    c.case("usage_missing_arg", &["images", "rm"]);
    let base = std::mem::replace(
        &mut c.base,
        vec!["--address".into(), d.join("missing.sock").into()],
    );
    c.case("version_no_berthd", &["version"]);
    c.case("images_ls_no_berthd", &["images", "ls"]);
    c.case("snapshots_ls_no_berthd", &["snapshots", "ls"]);
    c.case("tasks_ls_no_berthd", &["tasks", "ls"]);
    c.case("events_no_berthd", &["events"]);
    c.base = base;

    c.g.finish();
    guard.berthd.take().unwrap().stop();
    drop(guard);
    println!("outputs test took {:?}", t.elapsed());
}
