//! Golden files: comparing, blessing, masking volatile values.

use super::*;

pub(crate) fn bless() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The golden files of one directory under `golden/`: compared (or rewritten with BLESS=1),
/// and at the end, any file no check asked for is stale.
pub(crate) struct Goldens {
    sub: &'static str,
    seen: BTreeSet<String>,
    pub(crate) failures: Vec<String>,
}

impl Goldens {
    pub(crate) fn new(sub: &'static str) -> Self {
        Self {
            sub,
            seen: BTreeSet::new(),
            failures: Vec::new(),
        }
    }

    pub(crate) fn dir(&self) -> PathBuf {
        Path::new(GOLDEN).join(self.sub)
    }

    pub(crate) fn check(&mut self, name: &str, actual: &str) {
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
    pub(crate) fn skip(&mut self, name: &str, why: &str) {
        eprintln!("SKIP: golden case {}/{name}: {why}", self.sub);
        self.seen.insert(format!("{name}.txt"));
    }

    /// Stale files, then every failure at once.
    pub(crate) fn finish(mut self) {
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
pub(crate) fn diff(expected: &str, actual: &str) -> String {
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
pub(crate) const RULES: &[(Option<&str>, &str, &str)] = &[
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

pub(crate) fn rules() -> &'static [(Option<Regex>, Regex, &'static str)] {
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
pub(crate) fn normalise(text: &str, literals: &[(String, &str)]) -> String {
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

pub(crate) fn replace_literals(s: &str, literals: &[(String, &str)]) -> String {
    let mut s = s.to_string();
    for (value, with) in literals {
        s = s.replace(value.as_str(), with);
    }
    s
}

/// berthctl's table layout (`ctl::table`): left-aligned, two spaces between columns, no
/// trailing blanks; without the final newline.
pub(crate) fn align(header: &[&str], rows: &[Vec<String>]) -> String {
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
pub(crate) fn normalise_masks_cells_and_realigns() {
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
