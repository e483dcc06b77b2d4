//! The cgroup v2 tree init owns, with a fixed layout (`docs/init-services.md`):
//!
//! ```text
//! /sys/fs/cgroup              controllers enabled for children
//! ├── init.scope              berth-init itself (PID 1 and its threads)
//! ├── system.slice            controllers enabled for children
//! │   ├── berthd              one cgroup per supervised service
//! │   └── <service>
//! └── containers.slice        delegated to berthd: controllers enabled for children;
//!     └── <namespace>-<id>    created by berthd, one per shim and its container
//! ```
//!
//! Restarting a service kills only its own cgroup, so containers (never under berthd's
//! cgroup) outlive any restart of the engine. Init touches `containers.slice` only at
//! shutdown, last.
//!
//! Everything here works on a root directory given by the caller, so the logic is tested
//! with a temporary directory standing in for `/sys/fs/cgroup` (the host may run cgroup v1).

pub mod resources;

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use resources::{CpuMax, Max, MemoryMax, PidsMax, Resources};

/// Where cgroup2 is mounted (with `nsdelegate,favordynmods`, `mounts::STAGE2_MOUNTS`).
pub const ROOT: &str = "/sys/fs/cgroup";
/// Init's own cgroup.
pub const INIT_SCOPE: &str = "init.scope";
/// Parent of the services' cgroups.
pub const SYSTEM_SLICE: &str = "system.slice";
/// Delegated to berthd for shims and containers.
pub const CONTAINERS_SLICE: &str = "containers.slice";

/// Errors of cgroup operations; each names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/sys/fs/cgroup` is not a cgroup v2 mount (no `cgroup.controllers`).
    #[error("{path} is not a cgroup v2 hierarchy (no cgroup.controllers)", path = path.display())]
    NotCgroup2 {
        /// The root that was checked.
        path: PathBuf,
    },
    /// A file or directory operation failed.
    #[error("cannot {what} {path}: {source}", path = path.display())]
    Io {
        /// What was being done, e.g. "write 1 to".
        what: String,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A service name that cannot be a cgroup directory name.
    #[error("service name {0:?} cannot name a cgroup (empty, starts with a dot, or has a slash)")]
    BadName(String),
    /// Setting a reservation or limit failed; names the config key.
    #[error("cannot set {file} = {value} ({key}) in {dir}: {source}", dir = dir.display())]
    Limit {
        /// Interface file, e.g. `memory.max`.
        file: &'static str,
        /// Config key, e.g. `berthd.resources.memory_max`.
        key: String,
        /// The value written.
        value: String,
        /// The service's cgroup.
        dir: PathBuf,
        /// The cause (ENOENT: the controller is not enabled).
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    let what = what.into();
    move |source| CgroupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to an existing interface file (never creates one: a missing file means a
/// controller is not enabled, and that must show as an error).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create", path)(e)),
    }
}

/// The controllers listed in `dir/cgroup.controllers` (those the parent enabled for `dir`).
pub fn controllers(dir: &Path) -> Result<Vec<String>, CgroupError> {
    let path = dir.join("cgroup.controllers");
    let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
    Ok(text.split_whitespace().map(String::from).collect())
}

/// Enables `wanted` in `dir/cgroup.subtree_control`: all in one write, and when the kernel
/// refuses that, one by one so each refusal is reported with its controller.
pub fn enable_controllers(
    dir: &Path,
    wanted: &[String],
) -> (Vec<String>, Vec<(String, CgroupError)>) {
    let path = dir.join("cgroup.subtree_control");
    if wanted.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let all: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
    if write_file(&path, &all.join(" ")).is_ok() {
        return (wanted.to_vec(), Vec::new());
    }
    let mut enabled = Vec::new();
    let mut failed = Vec::new();
    for c in wanted {
        match write_file(&path, &format!("+{c}")) {
            Ok(()) => enabled.push(c.clone()),
            Err(e) => failed.push((c.clone(), io_err(format!("enable +{c} in"), &path)(e))),
        }
    }
    (enabled, failed)
}

/// What [`Tree::setup`] did; every failure is reported and the rest still done.
#[derive(Debug, Default)]
pub struct SetupReport {
    /// Controllers enabled in the root's `subtree_control`.
    pub enabled: Vec<String>,
    /// Everything that failed (a controller refused, a directory not created, init not
    /// moved).
    pub errors: Vec<CgroupError>,
}

/// Init's cgroup tree under a root (normally [`ROOT`]).
#[derive(Debug, Clone)]
pub struct Tree {
    root: PathBuf,
}

impl Tree {
    /// Creates the fixed layout under `root` and moves process `pid` (init) into
    /// `init.scope`. Fails only when `root` is not cgroup v2; anything else is reported in
    /// the [`SetupReport`] and the rest goes on.
    ///
    /// Order matters: init leaves the root first (the root is exempt from the "no internal
    /// processes" rule, but moving early keeps the root empty of user processes), then the
    /// root's controllers are enabled, then the slices get theirs.
    pub fn setup(root: &Path, pid: u32) -> Result<(Self, SetupReport), CgroupError> {
        let available = match controllers(root) {
            Ok(c) => c,
            Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(CgroupError::NotCgroup2 {
                    path: root.to_path_buf(),
                })
            }
            Err(e) => return Err(e),
        };
        let tree = Self {
            root: root.to_path_buf(),
        };
        let mut report = SetupReport::default();
        let scope = root.join(INIT_SCOPE);
        match mkdir(&scope) {
            Ok(()) => {
                let procs = scope.join("cgroup.procs");
                if let Err(e) = write_file(&procs, &pid.to_string()) {
                    report
                        .errors
                        .push(io_err(format!("move init (pid {pid}) into"), &procs)(e));
                }
            }
            Err(e) => report.errors.push(e),
        }
        let (enabled, failed) = enable_controllers(root, &available);
        report.enabled = enabled;
        report.errors.extend(failed.into_iter().map(|(_, e)| e));
        for slice in [SYSTEM_SLICE, CONTAINERS_SLICE] {
            let dir = root.join(slice);
            if let Err(e) = mkdir(&dir) {
                report.errors.push(e);
                continue;
            }
            match controllers(&dir) {
                Ok(wanted) => {
                    let (_, failed) = enable_controllers(&dir, &wanted);
                    report.errors.extend(failed.into_iter().map(|(_, e)| e));
                }
                Err(e) => report.errors.push(e),
            }
        }
        Ok((tree, report))
    }

    /// A tree over an existing layout (no changes made).
    pub fn open(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `containers.slice`.
    pub fn containers(&self) -> PathBuf {
        self.root.join(CONTAINERS_SLICE)
    }

    /// `system.slice/<name>`.
    pub fn service_dir(&self, name: &str) -> Result<PathBuf, CgroupError> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
            return Err(CgroupError::BadName(name.to_string()));
        }
        Ok(self.root.join(SYSTEM_SLICE).join(name))
    }

    /// Creates (or reuses) `system.slice/<name>`, writes its reservations and limits, and opens
    /// its `cgroup.procs` for the child to write itself into before exec. Limits that cannot
    /// be set are returned with the cgroup: the service still runs, without them. `key`
    /// prefixes the config keys in messages (e.g. `berthd.resources`).
    pub fn prepare_service(
        &self,
        name: &str,
        resources: &Resources,
        key: &str,
    ) -> Result<(ServiceCgroup, Vec<CgroupError>), CgroupError> {
        let dir = self.service_dir(name)?;
        mkdir(&dir)?;
        let mut errors = Vec::new();
        for (file, field, value) in resources.files() {
            if let Err(source) = write_file(&dir.join(file), &value) {
                errors.push(CgroupError::Limit {
                    file,
                    key: format!("{key}.{field}"),
                    value,
                    dir: dir.clone(),
                    source,
                });
            }
        }
        let procs_path = dir.join("cgroup.procs");
        let procs = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&procs_path)
            .map_err(io_err("open", &procs_path))?;
        Ok((
            ServiceCgroup {
                dir,
                procs: procs.into(),
            },
            errors,
        ))
    }
}

/// A service's cgroup, ready for a child to join.
#[derive(Debug)]
pub struct ServiceCgroup {
    /// `system.slice/<name>`.
    pub dir: PathBuf,
    /// `cgroup.procs` of `dir`, open for writing (close-on-exec).
    pub procs: OwnedFd,
}

/// Whether `dir` or any cgroup below it has a process (`populated` in `cgroup.events`).
pub fn populated(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.events");
    let text = fs::read_to_string(&path).map_err(io_err("read", &path))?;
    parse_populated(&text).ok_or_else(|| {
        io_err("parse", &path)(io::Error::new(
            io::ErrorKind::InvalidData,
            "no `populated` line",
        ))
    })
}

/// The `populated` flag of a `cgroup.events` text.
pub fn parse_populated(events: &str) -> Option<bool> {
    events.lines().find_map(
        |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["populated", v] => Some(*v != "0"),
            _ => None,
        },
    )
}

/// The processes in `dir` and every cgroup below it.
pub fn pids_recursive(dir: &Path) -> Vec<Pid> {
    let mut out = Vec::new();
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw),
        );
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(pids_recursive(&entry.path()));
            }
        }
    }
    out
}

/// Sends `signal` to every process in `dir` and below; returns how many were signalled.
pub fn signal_all(dir: &Path, signal: Signal) -> usize {
    pids_recursive(dir)
        .into_iter()
        .filter(|pid| kill(*pid, signal).is_ok())
        .count()
}

/// How a cgroup was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMethod {
    /// `cgroup.kill` (Linux 5.14+): the kernel kills every process, forks included.
    CgroupKill,
    /// SIGKILL to each pid of `cgroup.procs` (older kernels); repeated a few times to catch
    /// processes forked meanwhile.
    EachPid,
}

/// SIGKILLs every process in `dir` and below. Use [`populated`] to see when they are gone.
pub fn kill_all(dir: &Path) -> Result<KillMethod, CgroupError> {
    let path = dir.join("cgroup.kill");
    match write_file(&path, "1") {
        Ok(()) => Ok(KillMethod::CgroupKill),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            for _ in 0..5 {
                if signal_all(dir, Signal::SIGKILL) == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Ok(KillMethod::EachPid)
        }
        Err(e) => Err(io_err("write 1 to", &path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cgroup directory with the interface files the kernel would create.
    fn fake_cgroup(dir: &Path, controllers: &str, extra: &[&str]) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
        for f in ["cgroup.subtree_control", "cgroup.procs"]
            .iter()
            .chain(extra)
        {
            fs::write(dir.join(f), "").unwrap();
        }
    }

    #[test]
    fn setup_builds_the_layout_and_moves_init() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fake_cgroup(root, "cpu memory pids\n", &[]);
        fake_cgroup(&root.join(INIT_SCOPE), "", &[]);
        fake_cgroup(&root.join(SYSTEM_SLICE), "cpu memory pids\n", &[]);
        fake_cgroup(&root.join(CONTAINERS_SLICE), "cpu memory pids\n", &[]);
        let (tree, report) = Tree::setup(root, 1).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.enabled, ["cpu", "memory", "pids"]);
        let read = |p: &str| fs::read_to_string(root.join(p)).unwrap();
        assert_eq!(read("init.scope/cgroup.procs"), "1");
        assert_eq!(read("cgroup.subtree_control"), "+cpu +memory +pids");
        assert_eq!(
            read("system.slice/cgroup.subtree_control"),
            "+cpu +memory +pids"
        );
        assert_eq!(
            read("containers.slice/cgroup.subtree_control"),
            "+cpu +memory +pids"
        );
        assert_eq!(tree.containers(), root.join("containers.slice"));
    }

    #[test]
    fn setup_reports_what_fails_and_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // No kernel files in the new directories: moving init and the slices' controllers
        // fail and are reported, each naming its file.
        fake_cgroup(root, "memory\n", &[]);
        let (_, report) = Tree::setup(root, 1).unwrap();
        assert_eq!(report.enabled, ["memory"]);
        let lines: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0].starts_with("cannot move init (pid 1) into ")
                && lines[0].contains("init.scope/cgroup.procs")
        );
        assert!(
            lines[1].contains("system.slice/cgroup.controllers"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("containers.slice/cgroup.controllers"),
            "{lines:?}"
        );
    }

    #[test]
    fn not_cgroup2_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Tree::setup(tmp.path(), 1).unwrap_err();
        assert!(matches!(err, CgroupError::NotCgroup2 { .. }), "{err}");
    }

    #[test]
    fn enable_reports_each_refused_controller() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory where subtree_control should be: every write fails.
        fs::create_dir_all(tmp.path().join("cgroup.subtree_control")).unwrap();
        let (enabled, failed) = enable_controllers(tmp.path(), &["cpu".into(), "io".into()]);
        assert!(enabled.is_empty());
        let names: Vec<&str> = failed.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["cpu", "io"]);
        assert!(
            failed[1].1.to_string().starts_with("cannot enable +io in "),
            "{}",
            failed[1].1
        );
    }

    #[test]
    fn prepare_service_writes_limits_and_reports_missing_controllers() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = Tree::open(tmp.path());
        let dir = tmp.path().join("system.slice/berthd");
        fake_cgroup(&dir, "memory", &["memory.min", "memory.max"]);
        let resources: Resources =
            toml::from_str("memory_min = \"16M\"\nmemory_max = \"1G\"\npids_max = 100\n").unwrap();
        let (cg, errors) = tree
            .prepare_service("berthd", &resources, "berthd.resources")
            .unwrap();
        assert_eq!(cg.dir, dir);
        assert_eq!(
            fs::read_to_string(dir.join("memory.min")).unwrap(),
            (16u64 << 20).to_string()
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            (1u64 << 30).to_string()
        );
        assert_eq!(errors.len(), 1);
        let line = errors[0].to_string();
        assert!(
            line.starts_with("cannot set pids.max = 100 (berthd.resources.pids_max) in "),
            "{line}"
        );
        assert!(
            !dir.join("pids.max").exists(),
            "an interface file was created"
        );
    }

    #[test]
    fn service_names_are_checked() {
        let tree = Tree::open(Path::new("/sys/fs/cgroup"));
        assert_eq!(
            tree.service_dir("berthd").unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/berthd")
        );
        for bad in ["", "..", ".hidden", "a/b"] {
            assert!(
                matches!(tree.service_dir(bad), Err(CgroupError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn populated_flag() {
        assert_eq!(parse_populated("populated 1\nfrozen 0\n"), Some(true));
        assert_eq!(parse_populated("populated 0\nfrozen 0\n"), Some(false));
        assert_eq!(parse_populated("frozen 0\n"), None);
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
        assert!(!populated(tmp.path()).unwrap());
        assert!(populated(&tmp.path().join("none")).is_err());
    }

    #[test]
    fn pids_are_collected_recursively() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.procs"), "10\n11\n").unwrap();
        fs::create_dir_all(tmp.path().join("ns-a")).unwrap();
        fs::write(tmp.path().join("ns-a/cgroup.procs"), "20\n").unwrap();
        let mut pids: Vec<i32> = pids_recursive(tmp.path())
            .iter()
            .map(|p| p.as_raw())
            .collect();
        pids.sort();
        assert_eq!(pids, [10, 11, 20]);
    }
}
