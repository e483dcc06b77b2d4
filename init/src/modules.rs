//! Kernel modules: `modules.dep` parsing and `finit_module(2)` loading in dependency order.
//!
//! There is no modprobe in the image. Modules are found through
//! `/lib/modules/<release>/modules.dep` (written by `depmod`), and each module is loaded after
//! everything it depends on. A module that is built into the kernel (`modules.builtin`) or
//! already loaded (`EEXIST`) counts as success.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Errors finding or loading modules.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `modules.dep` cannot be read.
    #[error("cannot read {path}: {source}", path = path.display())]
    ReadIndex {
        /// The index file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The module is neither in `modules.dep` nor built in.
    #[error("module {0} not found")]
    NotFound(String),
    /// The dependencies loop back on themselves.
    #[error("module {0} has a dependency cycle")]
    Cycle(String),
    /// The module file cannot be opened.
    #[error("cannot open module {path}: {source}", path = path.display())]
    Open {
        /// The module file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the module.
    #[error("cannot load module {name}: {errno}")]
    Load {
        /// The module.
        name: String,
        /// The kernel's answer.
        errno: Errno,
    },
}

/// How a module request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Loaded now.
    Loaded,
    /// It was loaded already.
    AlreadyLoaded,
    /// Compiled into the kernel.
    Builtin,
}

/// Normalised module name of a path or name: basename without `.ko[.xz|.zst|.gz]`, with
/// `-` as `_` (the kernel treats them alike).
pub fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let base = [".ko.xz", ".ko.zst", ".ko.gz", ".ko"]
        .iter()
        .find_map(|ext| base.strip_suffix(ext))
        .unwrap_or(base);
    base.replace('-', "_")
}

/// One `modules.dep` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path as written in `modules.dep` (relative to the release directory, or absolute).
    pub path: String,
    /// Names of the modules it needs, as listed.
    pub deps: Vec<String>,
}

/// The module index of one kernel release directory.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    /// Entries in file order, by normalised name.
    entries: BTreeMap<String, Entry>,
    order: Vec<String>,
    builtin: HashSet<String>,
}

impl ModuleIndex {
    /// Parses `modules.dep` text (and `modules.builtin` text, if any) for modules under `dir`.
    pub fn parse(dir: &Path, modules_dep: &str, modules_builtin: &str) -> Self {
        let mut index = Self {
            dir: dir.to_path_buf(),
            ..Self::default()
        };
        for line in modules_dep.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let name = module_name(path.trim());
            let deps = deps.split_whitespace().map(module_name).collect();
            if !index.entries.contains_key(&name) {
                index.order.push(name.clone());
            }
            index.entries.insert(
                name,
                Entry {
                    path: path.trim().to_string(),
                    deps,
                },
            );
        }
        index.builtin = modules_builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        index
    }

    /// Reads `dir/modules.dep` and, when present, `dir/modules.builtin`.
    pub fn read(dir: &Path) -> Result<Self, ModuleError> {
        let dep_path = dir.join("modules.dep");
        let dep = std::fs::read_to_string(&dep_path).map_err(|source| ModuleError::ReadIndex {
            path: dep_path,
            source,
        })?;
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        Ok(Self::parse(dir, &dep, &builtin))
    }

    /// Reads the index of the running kernel under `root` (e.g. `/` → `/lib/modules/<release>`).
    pub fn for_running_kernel(root: &Path) -> Result<Self, ModuleError> {
        Self::read(&root.join("lib/modules").join(kernel_release()))
    }

    /// Every module in the index, in file order.
    pub fn all(&self) -> &[String] {
        &self.order
    }

    /// Whether `name` is compiled into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// The modules `name` depends on directly or indirectly, as `modules.dep` lists them
    /// (empty for unknown or built-in modules).
    pub fn deps(&self, name: &str) -> &[String] {
        self.entries
            .get(&module_name(name))
            .map(|e| e.deps.as_slice())
            .unwrap_or(&[])
    }

    /// The file of module `name`.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.entries
            .get(&module_name(name))
            .map(|e| self.dir.join(&e.path))
    }

    /// Modules to load, dependencies first, for `names` (each once). A name that is built in
    /// and not in the index is left out; an unknown name is an error.
    pub fn plan<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<String>, ModuleError> {
        let mut done = Vec::new();
        let mut seen = HashSet::new();
        for name in names {
            let name = module_name(name.as_ref());
            if !self.entries.contains_key(&name) {
                if self.builtin.contains(&name) {
                    continue;
                }
                return Err(ModuleError::NotFound(name));
            }
            self.visit(&name, &mut seen, &mut Vec::new(), &mut done)?;
        }
        Ok(done)
    }

    fn visit(
        &self,
        name: &str,
        seen: &mut HashSet<String>,
        stack: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if seen.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|n| n == name) {
            return Err(ModuleError::Cycle(name.to_string()));
        }
        let Some(entry) = self.entries.get(name) else {
            if self.builtin.contains(name) {
                return Ok(());
            }
            return Err(ModuleError::NotFound(name.to_string()));
        };
        stack.push(name.to_string());
        // modules.dep lists the deepest dependency last; visiting from the end keeps the
        // order modprobe uses while the recursion guarantees correctness either way.
        for dep in entry.deps.iter().rev() {
            self.visit(dep, seen, stack, done)?;
        }
        stack.pop();
        seen.insert(name.to_string());
        done.push(name.to_string());
        Ok(())
    }

    /// Loads `name` (which must be in the index; its dependencies are not loaded here, see
    /// [`ModuleIndex::plan`]).
    pub fn load_one(&self, name: &str) -> Result<Outcome, ModuleError> {
        let name = module_name(name);
        let Some(path) = self.file(&name) else {
            if self.is_builtin(&name) {
                return Ok(Outcome::Builtin);
            }
            return Err(ModuleError::NotFound(name));
        };
        let file = File::open(&path).map_err(|source| ModuleError::Open {
            path: path.clone(),
            source,
        })?;
        let compressed = path.extension().is_some_and(|e| e != "ko");
        match finit_module(&file, compressed) {
            Ok(()) => Ok(Outcome::Loaded),
            Err(Errno::EEXIST) => Ok(Outcome::AlreadyLoaded),
            Err(errno) => Err(ModuleError::Load { name, errno }),
        }
    }

    /// Loads `names` and their dependencies. Returns, for each requested name, how it ended;
    /// a failure of one module does not stop the others.
    pub fn load<S: AsRef<str>>(&self, names: &[S]) -> Vec<(String, Result<Outcome, ModuleError>)> {
        let mut results = Vec::new();
        let mut loaded: HashSet<String> = HashSet::new();
        for requested in names {
            let requested = module_name(requested.as_ref());
            let result = self
                .plan(std::slice::from_ref(&requested))
                .and_then(|plan| {
                    let mut outcome = if plan.is_empty() {
                        Outcome::Builtin
                    } else {
                        Outcome::AlreadyLoaded
                    };
                    for name in plan {
                        if loaded.contains(&name) {
                            continue;
                        }
                        let one = self.load_one(&name)?;
                        loaded.insert(name.clone());
                        if name == requested {
                            outcome = one;
                        }
                    }
                    Ok(outcome)
                });
            results.push((requested, result));
        }
        results
    }
}

/// `finit_module(2)` with empty parameters; `compressed` asks the kernel to decompress
/// (`MODULE_INIT_COMPRESSED_FILE`, Linux 6.4+).
fn finit_module(file: &File, compressed: bool) -> Result<(), Errno> {
    const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;
    let params: &CStr = c"";
    let flags = if compressed {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        0
    };
    // SAFETY: the fd is open for the duration of the call and `params` is a valid
    // NUL-terminated string; the kernel only reads both.
    let res = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    Errno::result(res).map(drop)
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data, all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: the kernel NUL-terminates `release` within the array.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/erofs/erofs.ko: kernel/lib/lz4/lz4_decompress.ko kernel/fs/netfs/netfs.ko kernel/fs/fscache/fscache.ko
kernel/lib/lz4/lz4_decompress.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/block/loop.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/foo-bar.ko.xz:
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(
            Path::new("/lib/modules/6.1.0"),
            DEP,
            "kernel/fs/ext4/ext4.ko\nkernel/fs/overlayfs/overlay.ko\n",
        )
    }

    fn pos(plan: &[String], name: &str) -> usize {
        plan.iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} not in {plan:?}"))
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/fs/erofs/erofs.ko"), "erofs");
        assert_eq!(module_name("kernel/fs/foo-bar.ko.xz"), "foo_bar");
        assert_eq!(module_name("virtio-pci"), "virtio_pci");
        assert_eq!(module_name("loop"), "loop");
    }

    #[test]
    fn dependencies_come_first() {
        let plan = index().plan(&["erofs"]).unwrap();
        assert_eq!(plan.len(), 4);
        assert!(pos(&plan, "netfs") < pos(&plan, "fscache"));
        assert!(pos(&plan, "fscache") < pos(&plan, "erofs"));
        assert!(pos(&plan, "lz4_decompress") < pos(&plan, "erofs"));
        assert_eq!(plan.last().unwrap(), "erofs");
    }

    #[test]
    fn virtio_ring_before_virtio_before_pci() {
        let plan = index().plan(&["virtio_pci", "virtio_console"]).unwrap();
        assert!(pos(&plan, "virtio_ring") < pos(&plan, "virtio"));
        assert!(pos(&plan, "virtio") < pos(&plan, "virtio_pci"));
        assert!(pos(&plan, "virtio") < pos(&plan, "virtio_console"));
        // each module once
        let unique: HashSet<_> = plan.iter().collect();
        assert_eq!(unique.len(), plan.len());
    }

    #[test]
    fn whole_index_is_ordered() {
        let index = index();
        let plan = index.plan(index.all()).unwrap();
        assert_eq!(plan.len(), index.all().len());
        assert!(pos(&plan, "virtio_ring") < pos(&plan, "virtio"));
        assert!(pos(&plan, "netfs") < pos(&plan, "fscache"));
    }

    #[test]
    fn builtin_and_unknown() {
        let index = index();
        assert_eq!(index.plan(&["overlay"]).unwrap(), Vec::<String>::new());
        assert!(index.is_builtin("ext4"));
        assert!(matches!(index.plan(&["nope"]), Err(ModuleError::NotFound(n)) if n == "nope"));
        assert!(matches!(index.load_one("overlay"), Ok(Outcome::Builtin)));
    }

    #[test]
    fn cycles_are_detected() {
        let index = ModuleIndex::parse(Path::new("/m"), "a.ko: b.ko\nb.ko: a.ko\n", "");
        assert!(matches!(index.plan(&["a"]), Err(ModuleError::Cycle(_))));
    }

    #[test]
    fn paths_are_joined_to_the_release_dir() {
        let index = index();
        assert_eq!(
            index.file("erofs").unwrap(),
            PathBuf::from("/lib/modules/6.1.0/kernel/fs/erofs/erofs.ko")
        );
        assert_eq!(
            index.file("foo-bar").unwrap(),
            PathBuf::from("/lib/modules/6.1.0/kernel/fs/foo-bar.ko.xz")
        );
    }
}
