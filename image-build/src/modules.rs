//! Kernel module selection: the modules an image part asks for plus everything they depend
//! on, read from the kernel's `modules.dep` (as written by `depmod`).
//!
//! Each image part (initramfs, root) gets its own minimal `modules.dep` listing exactly the
//! modules it carries, with depmod's relative paths, plus `modules.builtin` (so a loader can
//! skip built-ins quietly) and the `modules.alias` lines of the modules it carries (for
//! modalias coldplug).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

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
    /// A line of `modules.dep` is not `path: dep dep…`.
    #[error("{}:{line}: not a modules.dep line", path.display())]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
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
        /// The missing dependency's path.
        dep: String,
    },
    /// Adding files to the image tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// One `modules.dep` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepLine {
    /// Normalised module name (`virtio_net`).
    pub name: String,
    /// Path relative to `lib/modules/<release>/`.
    pub path: String,
    /// Paths of its dependencies, as depmod lists them.
    pub deps: Vec<String>,
}

/// The module index of one kernel release.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    dir: PathBuf,
    release: String,
    lines: Vec<DepLine>,
    by_name: HashMap<String, usize>,
    by_path: HashMap<String, usize>,
    builtin_text: String,
    builtin: BTreeSet<String>,
    alias_text: String,
}

/// A resolved module closure, in `modules.dep` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSet {
    /// The selected modules' lines.
    pub lines: Vec<DepLine>,
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

/// Normalised module name of a module path: basename without `.ko[.xz|.zst|.gz]`, `-`→`_`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = match base.find(".ko") {
        Some(i) => &base[..i],
        None => base,
    };
    stem.replace('-', "_")
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
        let mut index = Self::parse(&dep, &builtin, &alias, &dir.join("modules.dep"))?;
        index.dir = dir.to_path_buf();
        index.release = release;
        Ok(index)
    }

    /// Parses index texts; `dep_path` only names the file in errors.
    pub fn parse(
        dep: &str,
        builtin: &str,
        alias: &str,
        dep_path: &Path,
    ) -> Result<Self, ModulesError> {
        let mut lines = Vec::new();
        let mut by_name = HashMap::new();
        let mut by_path = HashMap::new();
        for (n, line) in dep.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (path, deps) = line.split_once(':').ok_or(ModulesError::BadLine {
                path: dep_path.to_path_buf(),
                line: n + 1,
            })?;
            let path = path.trim().to_string();
            let name = module_name(&path);
            by_name.entry(name.clone()).or_insert(lines.len());
            by_path.insert(path.clone(), lines.len());
            lines.push(DepLine {
                name,
                path,
                deps: deps.split_whitespace().map(str::to_string).collect(),
            });
        }
        let builtin_set = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| module_name(l.trim()))
            .collect();
        Ok(Self {
            dir: PathBuf::new(),
            release: String::new(),
            lines,
            by_name,
            by_path,
            builtin_text: builtin.to_string(),
            builtin: builtin_set,
            alias_text: alias.to_string(),
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
            let Some(&idx) = self.by_name.get(&name) else {
                if self.builtin.contains(&name) {
                    builtin.push(name);
                    continue;
                }
                return Err(ModulesError::Unknown {
                    module: module.as_str().to_string(),
                    key: key.to_string(),
                    definition: definition.to_path_buf(),
                    release: self.release.clone(),
                });
            };
            let mut stack = vec![idx];
            while let Some(i) = stack.pop() {
                if !selected.insert(i) {
                    continue;
                }
                for dep in &self.lines[i].deps {
                    let &d =
                        self.by_path
                            .get(dep)
                            .ok_or_else(|| ModulesError::DanglingDependency {
                                module: self.lines[i].name.clone(),
                                dep: dep.clone(),
                            })?;
                    stack.push(d);
                }
            }
        }
        Ok(ModuleSet {
            lines: selected
                .into_iter()
                .map(|i| self.lines[i].clone())
                .collect(),
            builtin,
        })
    }

    /// A `modules.dep` listing exactly `set`, in the kernel's order.
    pub fn modules_dep(set: &ModuleSet) -> String {
        let mut out = String::new();
        for line in &set.lines {
            out.push_str(&line.path);
            out.push(':');
            for dep in &line.deps {
                out.push(' ');
                out.push_str(dep);
            }
            out.push('\n');
        }
        out
    }

    /// The `modules.alias` lines whose module is in `set`.
    pub fn modules_alias(&self, set: &ModuleSet) -> String {
        let names: BTreeSet<&str> = set.lines.iter().map(|l| l.name.as_str()).collect();
        let mut out = String::new();
        for line in self.alias_text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("alias") {
                continue;
            }
            if let Some(module) = words.nth(1) {
                if names.contains(module.replace('-', "_").as_str()) {
                    out.push_str(line);
                    out.push('\n');
                }
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
            tree.file(prefix.join(&line.path), 0o644, self.dir.join(&line.path))?;
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
        ModuleIndex::parse(DEP, BUILTIN, ALIAS, Path::new("modules.dep")).unwrap()
    }

    fn names(list: &[&str]) -> Vec<ModuleName> {
        list.iter().map(|&s| ModuleName::from(s)).collect()
    }

    #[test]
    fn module_names_are_normalised() {
        assert_eq!(module_name("kernel/a/virtio-net.ko.xz"), "virtio_net");
        assert_eq!(module_name("kernel/a/loop.ko"), "loop");
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
        let idx = ModuleIndex::parse("a.ko: b.ko\n", "", "", Path::new("modules.dep")).unwrap();
        let err = idx
            .closure(&names(&["a"]), "k", Path::new("f"))
            .unwrap_err();
        assert!(matches!(err, ModulesError::DanglingDependency { .. }));
    }
}
