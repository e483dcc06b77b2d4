//! Kernel modules: `finit_module(2)` loading in dependency order.
//!
//! There is no modprobe in the image. Modules are found through
//! `/lib/modules/<release>/modules.dep` (written by `berth-image`, read with the same parser
//! it used: [`berth_layout::modules`]), and each module is loaded after everything it depends
//! on. A module that is built into the kernel (`modules.builtin`) or already loaded
//! (`EEXIST`) counts as success. Bad lines of the index are skipped and reported, never
//! fatal: PID 1 loads what it can.

use std::collections::HashSet;
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

pub use berth_layout::modules::{module_name, Issue};

use berth_layout::modules::{self as layout, PlanError};

impl From<PlanError> for ModuleError {
    fn from(err: PlanError) -> Self {
        match err {
            PlanError::Unknown(name) | PlanError::MissingDependency { dep: name, .. } => {
                Self::NotFound(name)
            }
            PlanError::Cycle(name) => Self::Cycle(name),
        }
    }
}

/// The module index of one kernel release directory: `modules.dep` and `modules.builtin`
/// read with the parser the image builder uses ([`berth_layout::modules`]), so both sides
/// see the same entries. Bad lines are skipped, never fatal; [`ModuleIndex::issues`] lists
/// them for the console.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    dir: PathBuf,
    index: layout::ModuleIndex,
    /// Names in file order.
    order: Vec<String>,
}

impl ModuleIndex {
    /// Parses `modules.dep` text (and `modules.builtin` text, if any) for modules under `dir`.
    pub fn parse(dir: &Path, modules_dep: &str, modules_builtin: &str) -> Self {
        let index = layout::ModuleIndex::parse(modules_dep, modules_builtin);
        Self {
            dir: dir.to_path_buf(),
            order: index.entries().iter().map(|e| e.name.clone()).collect(),
            index,
        }
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
        Self::read(&release_dir(root))
    }

    /// The lines of `modules.dep` that were skipped (see [`berth_layout::modules`]).
    pub fn issues(&self) -> &[Issue] {
        self.index.issues()
    }

    /// Every module in the index, in file order.
    pub fn all(&self) -> &[String] {
        &self.order
    }

    /// Whether `name` is compiled into the kernel.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.index.is_builtin(name)
    }

    /// The normalised names of the modules `name` depends on directly or indirectly, as
    /// `modules.dep` lists them (empty for unknown or built-in modules).
    pub fn deps(&self, name: &str) -> Vec<String> {
        self.index
            .get(name)
            .map(|e| e.deps.iter().map(|d| module_name(d)).collect())
            .unwrap_or_default()
    }

    /// The file of module `name`.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        self.index.get(name).map(|e| e.file(&self.dir))
    }

    /// Modules to load, dependencies first, for `names` (each once). A name that is built in
    /// and not in the index is left out; an unknown name is an error.
    pub fn plan<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<String>, ModuleError> {
        Ok(self
            .index
            .plan(names)?
            .into_iter()
            .map(|e| e.name.clone())
            .collect())
    }

    /// Loads `name` (which must be in the index; its dependencies are not loaded here, see
    /// [`ModuleIndex::plan`]).
    pub fn load_one(&self, name: &str) -> Result<Outcome, ModuleError> {
        let name = module_name(name);
        let Some(entry) = self.index.get(&name) else {
            if self.is_builtin(&name) {
                return Ok(Outcome::Builtin);
            }
            return Err(ModuleError::NotFound(name));
        };
        let path = entry.file(&self.dir);
        let file = File::open(&path).map_err(|source| ModuleError::Open {
            path: path.clone(),
            source,
        })?;
        match finit_module(&file, entry.is_compressed()) {
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

/// The running kernel's module directory under `root`: `<root>/lib/modules/<release>`.
pub fn release_dir(root: &Path) -> PathBuf {
    root.join(berth_layout::paths::in_tree(
        berth_layout::paths::MODULES_DIR,
    ))
    .join(kernel_release())
}

/// Says the skipped lines of `dir/modules.dep` on the console (one warning each: depmod
/// never writes such lines, so there are none or few). PID 1 goes on with the rest.
pub fn report_issues(index: &ModuleIndex, console: crate::console::Console) {
    for issue in index.issues() {
        console.warn(&format!(
            "modules: {}: {issue}; skipped",
            index.dir.join("modules.dep").display()
        ));
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

    /// PID 1's side of the bad-line rule: the odd lines are skipped and listed, the good
    /// ones load (the table of odd lines itself is `berth_layout::modules`' `odd_lines`).
    #[test]
    fn bad_lines_are_skipped_and_listed() {
        let index = ModuleIndex::parse(
            Path::new("/m"),
            "a.ko: b.ko\nnot a line\nb.ko:\nb.ko.xz:\n",
            "",
        );
        assert_eq!(index.all(), ["a", "b"]);
        assert_eq!(index.plan(&["a"]).unwrap(), ["b", "a"]);
        let lines: Vec<usize> = index.issues().iter().map(|i| i.line).collect();
        assert_eq!(lines, [2, 4]);
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
    fn missing_dependencies_and_cycles() {
        let index = ModuleIndex::parse(Path::new("/m"), "a.ko: gone.ko\n", "");
        assert!(matches!(index.plan(&["a"]), Err(ModuleError::NotFound(n)) if n == "gone"));
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
