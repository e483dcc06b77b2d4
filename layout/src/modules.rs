//! Kernel module indexes as `depmod` writes them: `modules.dep`, `modules.builtin` and
//! `modules.alias` under `lib/modules/<release>/`.
//!
//! Both sides read them with this one parser: `berth-image` reads the kernel's full index to
//! pick the modules an image part carries (and writes a smaller `modules.dep` for it with
//! [`write_dep`]), and `berth-init` reads the image's index to load modules in dependency
//! order. They must agree on every line, so they share the parsing, the name normalisation
//! and the dependency order.
//!
//! ## Lines
//! - `modules.dep`: `path: dep dep …`. Paths are relative to the release directory, or
//!   absolute (kmod uses those as they are); compressed modules (`.ko.xz`, `.ko.zst`,
//!   `.ko.gz`) are modules like any other. Blanks around words and at the ends of a line do
//!   not matter; blank lines and `#` comments are skipped.
//! - `modules.builtin`: one module path per line.
//! - `modules.alias`: `alias <glob over a modalias> <module>`; blank lines and `#` comments
//!   (depmod writes one on top) are skipped.
//!
//! ## The bad-line rule
//! A line that does not have this shape — no `:`, a path or dependency that is not a module
//! file, an alias line without exactly a pattern and a module — and a second entry for a
//! module name already listed are **skipped and recorded** as an [`Issue`] with the line
//! number. Parsing never fails. What a caller does with the issues is its own rule:
//! `berth-image` refuses to build from an index with any (an image built from a damaged
//! index would miss modules silently, and the build host is where someone can fix it), PID 1
//! says them on the console and loads what is left (it must never die over a file). Since
//! both skip exactly the same lines, the entries they see are the same. For duplicates the
//! first entry wins, as in libkmod's lookup of `modules.dep` text.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// File name suffixes of a loadable module: plain, then the compressions the kernel can
/// decompress itself (`finit_module(2)` with `MODULE_INIT_COMPRESSED_FILE`).
pub const MODULE_SUFFIXES: [&str; 4] = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"];

/// Normalised module name of a path or a name: basename without its module suffix, `-` as
/// `_` (the kernel treats them alike). `kernel/fs/foo-bar.ko.xz` → `foo_bar`.
pub fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let base = MODULE_SUFFIXES
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    base.replace('-', "_")
}

/// Whether `path` names a module file (ends in one of [`MODULE_SUFFIXES`], with a name).
pub fn is_module_path(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path);
    !path.chars().any(char::is_whitespace)
        && MODULE_SUFFIXES
            .iter()
            .any(|ext| base.strip_suffix(ext).is_some_and(|stem| !stem.is_empty()))
}

/// Whether the module file is compressed (the kernel must decompress it).
pub fn is_compressed(path: &str) -> bool {
    MODULE_SUFFIXES[1..].iter().any(|ext| path.ends_with(ext))
}

/// What is wrong with a skipped line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A `modules.dep` line without the `:` after the path.
    NoColon,
    /// A path or dependency that is not a module file (`.ko`, `.ko.xz`, …).
    NotAModule(String),
    /// A second entry for a module name; the first one (at `first_line`) is kept.
    Duplicate {
        /// The normalised name.
        name: String,
        /// Line of the entry that is kept.
        first_line: usize,
    },
    /// A `modules.alias` line that is not `alias <pattern> <module>`.
    NotAnAlias,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoColon => f.write_str("not `path: deps…`"),
            Self::NotAModule(word) => write!(f, "{word:?} is not a module file"),
            Self::Duplicate { name, first_line } => {
                write!(f, "second entry for {name} (line {first_line} is used)")
            }
            Self::NotAnAlias => f.write_str("not `alias <pattern> <module>`"),
        }
    }
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line number.
    pub line: usize,
    /// The line, trimmed.
    pub text: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.problem, self.text)
    }
}

/// One `modules.dep` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepEntry {
    /// Normalised module name (`virtio_net`).
    pub name: String,
    /// The path as written: relative to the release directory, or absolute.
    pub path: String,
    /// The paths of the modules it needs, as written (depmod lists all of them, the
    /// deepest last).
    pub deps: Vec<String>,
    /// 1-based line number.
    pub line: usize,
}

impl DepEntry {
    /// The module file for an index in `dir` (an absolute path stays as it is, like kmod).
    pub fn file(&self, dir: &Path) -> PathBuf {
        dir.join(&self.path)
    }

    /// Whether the kernel must decompress the file.
    pub fn is_compressed(&self) -> bool {
        is_compressed(&self.path)
    }

    /// The line as [`write_dep`] writes it.
    pub fn to_line(&self) -> String {
        let mut out = format!("{}:", self.path);
        for dep in &self.deps {
            out.push(' ');
            out.push_str(dep);
        }
        out
    }
}

/// Why modules cannot be ordered for loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A requested module is neither in `modules.dep` nor built in.
    #[error("module {0} not found")]
    Unknown(String),
    /// A dependency has no entry of its own (and is not built in).
    #[error("module {dep} (needed by {module}) not found")]
    MissingDependency {
        /// The module that needs it.
        module: String,
        /// The dependency's normalised name.
        dep: String,
    },
    /// The dependencies loop back on themselves.
    #[error("module {0} has a dependency cycle")]
    Cycle(String),
}

/// `modules.dep` and `modules.builtin` of one kernel release, parsed.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    entries: Vec<DepEntry>,
    by_name: HashMap<String, usize>,
    builtin: BTreeSet<String>,
    issues: Vec<Issue>,
}

impl ModuleIndex {
    /// Parses `modules.dep` and `modules.builtin` text. Never fails: bad lines are skipped
    /// and recorded ([`ModuleIndex::issues`]).
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> Self {
        let mut index = Self::default();
        for (n, raw) in modules_dep.lines().enumerate() {
            let line = n + 1;
            let text = raw.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let issue = |problem| Issue {
                line,
                text: text.to_string(),
                problem,
            };
            let Some((path, deps)) = text.split_once(':') else {
                index.issues.push(issue(Problem::NoColon));
                continue;
            };
            let path = path.trim();
            let deps: Vec<String> = deps.split_whitespace().map(str::to_string).collect();
            if let Some(bad) = std::iter::once(path)
                .chain(deps.iter().map(String::as_str))
                .find(|word| !is_module_path(word))
            {
                index
                    .issues
                    .push(issue(Problem::NotAModule(bad.to_string())));
                continue;
            }
            let name = module_name(path);
            if let Some(&first) = index.by_name.get(&name) {
                let first_line = index.entries[first].line;
                index
                    .issues
                    .push(issue(Problem::Duplicate { name, first_line }));
                continue;
            }
            index.by_name.insert(name.clone(), index.entries.len());
            index.entries.push(DepEntry {
                name,
                path: path.to_string(),
                deps,
                line,
            });
        }
        index.builtin = modules_builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(module_name)
            .collect();
        index
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[DepEntry] {
        &self.entries
    }

    /// The entry of module `name` (any spelling: path, `-` or `_`).
    pub fn get(&self, name: &str) -> Option<&DepEntry> {
        self.by_name
            .get(&module_name(name))
            .map(|&i| &self.entries[i])
    }

    /// Whether `name` is compiled into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// The lines that were skipped, in file order.
    pub fn issues(&self) -> &[Issue] {
        &self.issues
    }

    /// The modules to load for `names`, dependencies first, each once. A requested module
    /// that is built in (and has no entry) is left out; so is a built-in dependency.
    pub fn plan<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<&DepEntry>, PlanError> {
        let mut done = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            let name = module_name(name.as_ref());
            match self.by_name.get(&name) {
                Some(&i) => self.visit(i, &mut seen, &mut Vec::new(), &mut done)?,
                None if self.builtin.contains(&name) => {}
                None => return Err(PlanError::Unknown(name)),
            }
        }
        Ok(done.into_iter().map(|i| &self.entries[i]).collect())
    }

    fn visit(
        &self,
        i: usize,
        seen: &mut HashSet<usize>,
        stack: &mut Vec<usize>,
        done: &mut Vec<usize>,
    ) -> Result<(), PlanError> {
        if seen.contains(&i) {
            return Ok(());
        }
        let entry = &self.entries[i];
        if stack.contains(&i) {
            return Err(PlanError::Cycle(entry.name.clone()));
        }
        stack.push(i);
        // modules.dep lists the deepest dependency last; visiting from the end keeps the
        // order modprobe uses, while the recursion guarantees correctness either way.
        for dep in entry.deps.iter().rev() {
            let dep = module_name(dep);
            match self.by_name.get(&dep) {
                Some(&d) => self.visit(d, seen, stack, done)?,
                None if self.builtin.contains(&dep) => {}
                None => {
                    return Err(PlanError::MissingDependency {
                        module: entry.name.clone(),
                        dep,
                    })
                }
            }
        }
        stack.pop();
        seen.insert(i);
        done.push(i);
        Ok(())
    }
}

/// A `modules.dep` listing exactly `entries`, one line each, as [`ModuleIndex::parse`]
/// reads it back.
pub fn write_dep<'a>(entries: impl IntoIterator<Item = &'a DepEntry>) -> String {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&entry.to_line());
        out.push('\n');
    }
    out
}

/// One `modules.alias` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The glob over modalias strings (`virtio:d00000001v*`), as written.
    pub pattern: String,
    /// Normalised module name.
    pub module: String,
    /// The line, trimmed (what the builder copies into an image's `modules.alias`).
    pub text: String,
    /// 1-based line number.
    pub line: usize,
}

/// `modules.alias`, parsed.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    /// The aliases in file order.
    pub entries: Vec<Alias>,
    /// The lines that were skipped.
    pub issues: Vec<Issue>,
}

impl Aliases {
    /// Parses `modules.alias` text. Never fails: bad lines are skipped and recorded.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let text = raw.trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = text.split_whitespace().collect();
            match words.as_slice() {
                ["alias", pattern, module] => out.entries.push(Alias {
                    pattern: (*pattern).to_string(),
                    module: module_name(module),
                    text: text.to_string(),
                    line,
                }),
                _ => out.issues.push(Issue {
                    line,
                    text: text.to_string(),
                    problem: Problem::NotAnAlias,
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one table of odd lines. Each row is a line of `modules.dep` and what every reader
    /// (PID 1 and the builder alike) gets from it: the entry kept, or the issue recorded.
    #[test]
    fn odd_lines() {
        enum Want {
            Skip,
            Keep(&'static str, &'static str, &'static [&'static str]),
            Bad(Problem),
        }
        use Want::{Bad, Keep, Skip};
        let rows: Vec<(&str, Want)> = vec![
            (
                "kernel/drivers/block/loop.ko:",
                Keep("loop", "kernel/drivers/block/loop.ko", &[]),
            ),
            (
                "kernel/fs/erofs/erofs.ko: kernel/lib/lz4/lz4_decompress.ko.xz",
                Keep(
                    "erofs",
                    "kernel/fs/erofs/erofs.ko",
                    &["kernel/lib/lz4/lz4_decompress.ko.xz"],
                ),
            ),
            // compressed modules
            (
                "kernel/lib/lz4/lz4_decompress.ko.xz:",
                Keep("lz4_decompress", "kernel/lib/lz4/lz4_decompress.ko.xz", &[]),
            ),
            (
                "kernel/net/foo-bar.ko.zst:",
                Keep("foo_bar", "kernel/net/foo-bar.ko.zst", &[]),
            ),
            (
                "kernel/net/gz.ko.gz:",
                Keep("gz", "kernel/net/gz.ko.gz", &[]),
            ),
            // absolute paths (kmod uses them as they are)
            (
                "/opt/extra/zfs.ko: /opt/extra/spl.ko",
                Keep("zfs", "/opt/extra/zfs.ko", &["/opt/extra/spl.ko"]),
            ),
            ("/opt/extra/spl.ko:", Keep("spl", "/opt/extra/spl.ko", &[])),
            // blank lines, blanks only, comments
            ("", Skip),
            ("   \t ", Skip),
            ("# written by hand", Skip),
            // trailing and inner blanks, CRLF
            (
                "kernel/a/virtio.ko:   \t",
                Keep("virtio", "kernel/a/virtio.ko", &[]),
            ),
            (
                "  kernel/a/ring.ko :  kernel/a/virtio.ko   ",
                Keep("ring", "kernel/a/ring.ko", &["kernel/a/virtio.ko"]),
            ),
            ("kernel/a/crlf.ko:\r", Keep("crlf", "kernel/a/crlf.ko", &[])),
            // bad lines
            ("kernel/a/nocolon.ko", Bad(Problem::NoColon)),
            ("garbage", Bad(Problem::NoColon)),
            (
                ": kernel/a/virtio.ko",
                Bad(Problem::NotAModule(String::new())),
            ),
            (
                "kernel/a/readme.txt:",
                Bad(Problem::NotAModule("kernel/a/readme.txt".into())),
            ),
            (
                "kernel/a/.ko:",
                Bad(Problem::NotAModule("kernel/a/.ko".into())),
            ),
            (
                "kernel/a/two words.ko:",
                Bad(Problem::NotAModule("kernel/a/two words.ko".into())),
            ),
            (
                "kernel/a/dep.ko: notamodule",
                Bad(Problem::NotAModule("notamodule".into())),
            ),
            (
                "kernel/a/dep.ko: kernel/a/x.ko.bz2",
                Bad(Problem::NotAModule("kernel/a/x.ko.bz2".into())),
            ),
            // duplicates: exact, another path, another spelling; the first entry wins
            (
                "kernel/drivers/block/loop.ko:",
                Bad(Problem::Duplicate {
                    name: "loop".into(),
                    first_line: 1,
                }),
            ),
            (
                "updates/loop.ko.xz:",
                Bad(Problem::Duplicate {
                    name: "loop".into(),
                    first_line: 1,
                }),
            ),
            (
                "kernel/net/foo_bar.ko:",
                Bad(Problem::Duplicate {
                    name: "foo_bar".into(),
                    first_line: 4,
                }),
            ),
        ];
        let text: String = rows.iter().map(|(l, _)| format!("{l}\n")).collect();
        let index = ModuleIndex::parse(&text, "");
        let mut entries = index.entries().iter();
        let mut issues = index.issues().iter();
        for (n, (line, want)) in rows.iter().enumerate() {
            let line_no = n + 1;
            match want {
                Skip => {}
                Keep(name, path, deps) => {
                    let e = entries
                        .next()
                        .unwrap_or_else(|| panic!("no entry for {line:?}"));
                    assert_eq!(
                        (e.name.as_str(), e.path.as_str(), e.line),
                        (*name, *path, line_no),
                        "{line:?}"
                    );
                    assert_eq!(e.deps, *deps, "{line:?}");
                }
                Bad(problem) => {
                    let i = issues
                        .next()
                        .unwrap_or_else(|| panic!("no issue for {line:?}"));
                    assert_eq!((&i.problem, i.line), (problem, line_no), "{line:?}");
                    assert_eq!(i.text, line.trim(), "{line:?}");
                }
            }
        }
        assert_eq!(entries.next(), None, "more entries than rows say");
        assert_eq!(issues.next(), None, "more issues than rows say");

        // What the builder writes back for the kept entries reads back the same, with no
        // issue: the image's own index is exactly what the builder selected.
        let written = write_dep(index.entries());
        let again = ModuleIndex::parse(&written, "");
        assert!(again.issues().is_empty(), "{:?}", again.issues());
        let strip = |e: &DepEntry| (e.name.clone(), e.path.clone(), e.deps.clone());
        assert_eq!(
            again.entries().iter().map(strip).collect::<Vec<_>>(),
            index.entries().iter().map(strip).collect::<Vec<_>>()
        );

        // Lookups: any spelling, the first duplicate, absolute paths kept, compression seen.
        assert_eq!(
            index.get("foo-bar").unwrap().path,
            "kernel/net/foo-bar.ko.zst"
        );
        assert_eq!(
            index.get("loop").unwrap().path,
            "kernel/drivers/block/loop.ko"
        );
        let dir = Path::new("/lib/modules/6.1.0");
        assert_eq!(
            index.get("zfs").unwrap().file(dir),
            PathBuf::from("/opt/extra/zfs.ko")
        );
        assert_eq!(
            index.get("erofs").unwrap().file(dir),
            PathBuf::from("/lib/modules/6.1.0/kernel/fs/erofs/erofs.ko")
        );
        assert!(index.get("lz4_decompress").unwrap().is_compressed());
        assert!(!index.get("erofs").unwrap().is_compressed());
        // A module whose line was bad is simply not there.
        assert!(index.get("dep").is_none() && index.get("nocolon").is_none());
        // The issue says where and what, for the builder's error and init's console line.
        assert_eq!(
            index.issues()[0].to_string(),
            "line 14: not `path: deps…`: \"kernel/a/nocolon.ko\""
        );
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/fs/erofs/erofs.ko"), "erofs");
        assert_eq!(module_name("kernel/fs/foo-bar.ko.xz"), "foo_bar");
        assert_eq!(module_name("kernel/fs/z.ko.zst"), "z");
        assert_eq!(module_name("virtio-pci"), "virtio_pci");
        assert_eq!(module_name("loop"), "loop");
    }

    const DEP: &str = "\
kernel/fs/erofs/erofs.ko: kernel/lib/lz4/lz4_decompress.ko kernel/fs/netfs/netfs.ko kernel/fs/fscache/fscache.ko
kernel/lib/lz4/lz4_decompress.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/a/uses_builtin.ko: kernel/fs/ext4/ext4.ko
kernel/a/dangling.ko: kernel/a/gone.ko
";

    fn names(plan: &[&DepEntry]) -> Vec<String> {
        plan.iter().map(|e| e.name.clone()).collect()
    }

    #[test]
    fn plans_put_dependencies_first() {
        let index = ModuleIndex::parse(DEP, "kernel/fs/ext4/ext4.ko\n");
        assert!(index.issues().is_empty());
        assert_eq!(
            names(&index.plan(&["erofs"]).unwrap()),
            ["netfs", "fscache", "lz4_decompress", "erofs"]
        );
        assert_eq!(
            names(&index.plan(&["virtio-pci", "virtio"]).unwrap()),
            ["virtio_ring", "virtio", "virtio_pci"]
        );
        // Built in: requested or as a dependency, nothing to load.
        assert!(index.plan(&["ext4"]).unwrap().is_empty());
        assert_eq!(
            names(&index.plan(&["uses_builtin"]).unwrap()),
            ["uses_builtin"]
        );
        assert_eq!(
            index.plan(&["nope"]).unwrap_err(),
            PlanError::Unknown("nope".into())
        );
        assert_eq!(
            index.plan(&["dangling"]).unwrap_err(),
            PlanError::MissingDependency {
                module: "dangling".into(),
                dep: "gone".into()
            }
        );
        let cycle = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "");
        assert!(matches!(cycle.plan(&["a"]), Err(PlanError::Cycle(_))));
    }

    #[test]
    fn alias_lines() {
        let aliases = Aliases::parse(
            "# Aliases extracted from modules themselves.\n\
             alias virtio:d00000001v* virtio_net\n\
             \n\
             alias fs-erofs erofs   \n\
             alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio-pci\n\
             alias onlypattern\n\
             softdep a pre: b\n",
        );
        let got: Vec<(&str, &str, usize)> = aliases
            .entries
            .iter()
            .map(|a| (a.pattern.as_str(), a.module.as_str(), a.line))
            .collect();
        assert_eq!(
            got,
            [
                ("virtio:d00000001v*", "virtio_net", 2),
                ("fs-erofs", "erofs", 4),
                ("pci:v00001AF4d*sv*sd*bc*sc*i*", "virtio_pci", 5)
            ]
        );
        assert_eq!(aliases.entries[1].text, "alias fs-erofs erofs");
        let bad: Vec<usize> = aliases.issues.iter().map(|i| i.line).collect();
        assert_eq!(bad, [6, 7]);
    }
}
