//! Kernel module selection: the modules an image part asks for plus everything they depend
//! on, read from the kernel's `modules.dep` (as written by `depmod`).
//!
//! Each image part (initramfs, root) gets its own minimal `modules.dep` listing exactly the
//! modules it carries, with depmod's relative paths, plus `modules.builtin` (so a loader can
//! skip built-ins quietly) and the `modules.alias` lines of the modules it carries (for
//! modalias coldplug).
//!
//! The index files are read with the parser PID 1 uses ([`berth_layout::modules`]), so the
//! builder and init agree on every line. Where init skips a bad line and says so, the
//! builder refuses the index ([`ModulesError::BadLine`]): the build host is where a damaged
//! index can be fixed, and an image built from one would silently miss modules.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use berth_layout::modules::{self as layout, Aliases, Issue, PlanError};
pub use berth_layout::modules::{module_name, DepEntry};

use crate::definition::ModuleName;
use crate::tree::{Tree, TreeError};

/// A module list could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// A module index file could not be read.
    #[error("cannot read {} (run `depmod -b <root> <kernel release>` on the kernel tree)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line of `modules.dep` or `modules.alias` that PID 1 would skip
    /// ([`berth_layout::modules`] says which lines those are).
    #[error("{}:{}: {}: {:?}{}", path.display(), issue.line, issue.problem, issue.text,
        if *more > 0 { format!(" (and {more} more bad lines)") } else { String::new() })]
    BadLine {
        /// The file.
        path: PathBuf,
        /// The first bad line.
        issue: Issue,
        /// How many more there are.
        more: usize,
    },
    /// A requested module is neither a loadable module nor built in.
    #[error("unknown kernel module `{module}` in `{key}` of {}: not in modules.dep or modules.builtin of kernel {release}", definition.display())]
    Unknown {
        /// The module as written.
        module: String,
        /// The definition key that asked for it.
        key: String,
        /// The image definition file.
        definition: PathBuf,
        /// The kernel release searched.
        release: String,
    },
    /// A dependency named in `modules.dep` has no line of its own.
    #[error("modules.dep lists `{dep}` (needed by `{module}`) but has no entry for it")]
    DanglingDependency {
        /// The module that needs it.
        module: String,
        /// The missing dependency.
        dep: String,
    },
    /// The dependencies loop back on themselves.
    #[error("modules.dep: module `{0}` has a dependency cycle")]
    Cycle(String),
    /// A module to ship has an absolute path in `modules.dep`: there is no telling where it
    /// lives on the build host or where it belongs in the image.
    #[error("modules.dep lists `{module}` at the absolute path {path}; the image can only carry modules under the release directory")]
    AbsolutePath {
        /// The module.
        module: String,
        /// Its path as written.
        path: String,
    },
    /// Adding files to the image tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// The module index of one kernel release.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    dir: PathBuf,
    release: String,
    index: layout::ModuleIndex,
    builtin_text: String,
    aliases: Aliases,
}

/// A resolved module closure, in `modules.dep` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    /// The selected modules' entries.
    pub lines: Vec<DepEntry>,
    /// Requested modules that are built into the kernel (nothing to ship).
    pub builtin: Vec<String>,
}

impl ModuleSet {
    /// Names of the modules carried, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lines.iter().map(|l| l.name.clone()).collect();
        names.sort();
        names
    }
}

impl ModuleIndex {
    /// Reads `modules.dep`, `modules.builtin` and `modules.alias` from
    /// `lib/modules/<release>/`; the release is the directory's name.
    pub fn load(dir: &Path) -> Result<Self, ModulesError> {
        let read = |name: &str, required: bool| -> Result<String, ModulesError> {
            let path = dir.join(name);
            match fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                    Ok(String::new())
                }
                Err(source) => Err(ModulesError::Read { path, source }),
            }
        };
        let dep = read("modules.dep", true)?;
        let builtin = read("modules.builtin", false)?;
        let alias = read("modules.alias", false)?;
        let release = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut index = Self::parse(&dep, &builtin, &alias, dir)?;
        index.dir = dir.to_path_buf();
        index.release = release;
        Ok(index)
    }

    /// Parses index texts; `dir` only names the files in errors. Any line PID 1 would skip
    /// is an error here.
    pub fn parse(dep: &str, builtin: &str, alias: &str, dir: &Path) -> Result<Self, ModulesError> {
        let index = layout::ModuleIndex::parse(dep, builtin);
        refuse_issues(&dir.join("modules.dep"), index.issues())?;
        let aliases = Aliases::parse(alias);
        refuse_issues(&dir.join("modules.alias"), &aliases.issues)?;
        Ok(Self {
            dir: PathBuf::new(),
            release: String::new(),
            index,
            builtin_text: builtin.to_string(),
            aliases,
        })
    }

    /// The kernel release (`6.1.0-56-cloud-amd64`).
    pub fn release(&self) -> &str {
        &self.release
    }

    /// Resolves `requested` (from definition key `key` of file `definition`) and all
    /// dependencies. Built-in modules are skipped; unknown ones are an error.
    pub fn closure(
        &self,
        requested: &[ModuleName],
        key: &str,
        definition: &Path,
    ) -> Result<ModuleSet, ModulesError> {
        let mut selected = BTreeSet::new();
        let mut builtin = Vec::new();
        for module in requested {
            let name = module.normalized();
            if self.index.get(&name).is_none() && self.index.is_builtin(&name) {
                builtin.push(name);
                continue;
            }
            let plan = self.index.plan(&[&name]).map_err(|err| match err {
                PlanError::Unknown(_) => ModulesError::Unknown {
                    module: module.as_str().to_string(),
                    key: key.to_string(),
                    definition: definition.to_path_buf(),
                    release: self.release.clone(),
                },
                PlanError::MissingDependency { module, dep } => {
                    ModulesError::DanglingDependency { module, dep }
                }
                PlanError::Cycle(module) => ModulesError::Cycle(module),
            })?;
            // Kernel (file) order, so the output does not depend on the request order.
            selected.extend(plan.into_iter().map(|e| e.line));
        }
        Ok(ModuleSet {
            lines: self
                .index
                .entries()
                .iter()
                .filter(|e| selected.contains(&e.line))
                .cloned()
                .collect(),
            builtin,
        })
    }

    /// A `modules.dep` listing exactly `set`, in the kernel's order.
    pub fn modules_dep(set: &ModuleSet) -> String {
        layout::write_dep(&set.lines)
    }

    /// The `modules.alias` lines whose module is in `set`.
    pub fn modules_alias(&self, set: &ModuleSet) -> String {
        let names: BTreeSet<&str> = set.lines.iter().map(|l| l.name.as_str()).collect();
        let mut out = String::new();
        for alias in &self.aliases.entries {
            if names.contains(alias.module.as_str()) {
                out.push_str(&alias.text);
                out.push('\n');
            }
        }
        out
    }

    /// Adds `set`'s module files and index files to `tree` under `prefix`
    /// (`lib/modules/<release>` in the initramfs, `usr/lib/modules/<release>` in the root).
    pub fn add_to_tree(
        &self,
        set: &ModuleSet,
        tree: &mut Tree,
        prefix: &Path,
    ) -> Result<(), ModulesError> {
        tree.dir(prefix, 0o755)?;
        for line in &set.lines {
            if Path::new(&line.path).is_absolute() {
                return Err(ModulesError::AbsolutePath {
                    module: line.name.clone(),
                    path: line.path.clone(),
                });
            }
            tree.file(prefix.join(&line.path), 0o644, line.file(&self.dir))?;
        }
        tree.bytes(prefix.join("modules.dep"), 0o644, Self::modules_dep(set))?;
        tree.bytes(prefix.join("modules.alias"), 0o644, self.modules_alias(set))?;
        tree.bytes(
            prefix.join("modules.builtin"),
            0o644,
            self.builtin_text.clone(),
        )?;
        Ok(())
    }
}

/// The first issue of `file` as an error, if there is any.
fn refuse_issues(file: &Path, issues: &[Issue]) -> Result<(), ModulesError> {
    match issues.first() {
        None => Ok(()),
        Some(first) => Err(ModulesError::BadLine {
            path: file.to_path_buf(),
            issue: first.clone(),
            more: issues.len() - 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/block/loop.ko:
kernel/fs/erofs/erofs.ko: kernel/lib/lz4/lz4_decompress.ko
kernel/lib/lz4/lz4_decompress.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/unused.ko:
";
    const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/drivers/tty/vt.ko\n";
    const ALIAS: &str = "# Aliases extracted from modules themselves.\n\
alias virtio:d00000001v* virtio_net\nalias fs-erofs erofs\nalias devname:loop-control loop\n";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, BUILTIN, ALIAS, Path::new("/lib/modules/6.1.0")).unwrap()
    }

    fn names(list: &[&str]) -> Vec<ModuleName> {
        list.iter().map(|&s| ModuleName::from(s)).collect()
    }

    /// The builder's side of the bad-line rule: a line PID 1 would skip is an error naming
    /// the file and line (the table of odd lines itself is `berth_layout::modules`'
    /// `odd_lines`).
    #[test]
    fn bad_lines_are_refused() {
        let dir = Path::new("/lib/modules/6.1.0");
        let err = ModuleIndex::parse("a.ko:\ngarbage\nb.ko\n", "", "", dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/lib/modules/6.1.0/modules.dep:2: not `path: deps…`: \"garbage\" (and 1 more bad lines)"
        );
        let err = ModuleIndex::parse("a.ko:\na.ko.xz:\n", "", "", dir).unwrap_err();
        assert!(
            matches!(err, ModulesError::BadLine { ref issue, more: 0, .. } if issue.line == 2),
            "{err}"
        );
        let err = ModuleIndex::parse("a.ko:\n", "", "alias a\n", dir).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/lib/modules/6.1.0/modules.alias:1: "),
            "{err}"
        );
        // Blank lines, comments and compressed modules are fine.
        let idx = ModuleIndex::parse("\n# c\na.ko.zst:  \n", "", "# header\n", dir).unwrap();
        let set = idx.closure(&names(&["a"]), "k", Path::new("f")).unwrap();
        assert_eq!(ModuleIndex::modules_dep(&set), "a.ko.zst:\n");
    }

    /// Debian's kernels (cached by earlier builds) have no line the shared rule skips.
    #[test]
    fn real_kernel_indexes_have_no_bad_lines() {
        let Ok(kernels) = fs::read_dir("/var/cache/berth/kernel") else {
            eprintln!("SKIP real_kernel_indexes_have_no_bad_lines: no kernel cache");
            return;
        };
        for entry in kernels.filter_map(Result::ok) {
            let Ok(releases) = fs::read_dir(entry.path().join("tree/lib/modules")) else {
                continue;
            };
            for release in releases.filter_map(Result::ok) {
                if release.path().join("modules.dep").is_file() {
                    ModuleIndex::load(&release.path()).unwrap();
                }
            }
        }
    }

    #[test]
    fn absolute_paths_are_not_shipped() {
        let idx = ModuleIndex::parse("/opt/x.ko:\n", "", "", Path::new("/m")).unwrap();
        let set = idx.closure(&names(&["x"]), "k", Path::new("f")).unwrap();
        let mut tree = Tree::default();
        let err = idx
            .add_to_tree(&set, &mut tree, Path::new("lib/modules/r"))
            .unwrap_err();
        assert!(matches!(err, ModulesError::AbsolutePath { .. }), "{err}");
    }

    #[test]
    fn closure_follows_dependencies_transitively() {
        let set = index()
            .closure(
                &names(&["virtio-net", "loop"]),
                "root.modules",
                Path::new("image.toml"),
            )
            .unwrap();
        assert_eq!(
            set.names(),
            [
                "failover",
                "loop",
                "net_failover",
                "virtio",
                "virtio_net",
                "virtio_ring"
            ]
        );
        // Kernel order is kept, so the output is independent of the request order.
        let again = index()
            .closure(
                &names(&["loop", "virtio_net"]),
                "root.modules",
                Path::new("image.toml"),
            )
            .unwrap();
        assert_eq!(set, again);
        let dep = ModuleIndex::modules_dep(&set);
        assert!(dep.starts_with("kernel/drivers/block/loop.ko:\n"), "{dep}");
        assert!(dep.contains("kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n"));
        assert!(!dep.contains("unused"));
        assert!(!dep.contains("erofs"));
    }

    #[test]
    fn builtin_modules_are_skipped() {
        let set = index()
            .closure(
                &names(&["ext4", "erofs"]),
                "root.modules",
                Path::new("image.toml"),
            )
            .unwrap();
        assert_eq!(set.names(), ["erofs", "lz4_decompress"]);
        assert_eq!(set.builtin, ["ext4"]);
    }

    #[test]
    fn unknown_module_names_module_key_and_file() {
        let err = index()
            .closure(
                &names(&["loop", "nosuch"]),
                "initramfs.modules",
                Path::new("configs/image.toml"),
            )
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`nosuch`"), "{text}");
        assert!(text.contains("initramfs.modules"), "{text}");
        assert!(text.contains("configs/image.toml"), "{text}");
    }

    #[test]
    fn alias_lines_are_filtered() {
        let idx = index();
        let set = idx
            .closure(&names(&["erofs"]), "k", Path::new("f"))
            .unwrap();
        assert_eq!(idx.modules_alias(&set), "alias fs-erofs erofs\n");
    }

    #[test]
    fn dangling_dependency_is_reported() {
        let idx = ModuleIndex::parse("a.ko: b.ko\n", "", "", Path::new("/m")).unwrap();
        let err = idx
            .closure(&names(&["a"]), "k", Path::new("f"))
            .unwrap_err();
        assert!(matches!(err, ModulesError::DanglingDependency { .. }));
    }
}
