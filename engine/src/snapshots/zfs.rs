//! The `zfs` snapshotter: one ZFS dataset per snapshot, clones for children, and a snapshot
//! graph kept in berth's own metadata database so that no operation ever lists the pool.
//!
//! containerd's ZFS snapshotter slows down as datasets accumulate because it runs `zfs list`
//! on nearly every call, and its removal and GC stop at the first ZFS error, so datasets leak
//! (containerd/zfs issues 70 and 71). Here:
//!
//! * Records (kind, parent, labels, usage at commit) live in the shared
//!   [`MetaStore`](super::metastore::MetaStore); the dataset of snapshot `id` is
//!   `<parent dataset>/<id>`. Every operation runs only commands that name its own datasets,
//!   and a constant number of them (see [`Runner::count`]): prepare/view 1 (`zfs create` or
//!   `zfs clone`, properties set in the same command), commit 1 (`zfs snapshot`), remove 1
//!   (`zfs destroy -r`), usage 2 (`zfs get used`, `zfs userspace` for the object count),
//!   everything else 0. Each command that changes the pool waits for a transaction-group
//!   sync, which dominates its cost, so commit measures nothing: the usage of a committed
//!   snapshot (whose dataset is never mounted again) is read when asked for.
//! * Prepare with no parent creates a dataset; with a parent it clones `<parent>@snapshot`.
//!   Commit snapshots the dataset as `@snapshot`. Views are clones with `readonly=on`, mounted
//!   `ro`. Every dataset is `mountpoint=legacy` (berth mounts them itself, through
//!   [`super::mount`]), `xattr=sa` (extended attributes in the inode, mounted with the
//!   matching `saxattr` option: mount(2) without an xattr option, unlike `mount.zfs`, leaves
//!   user xattrs unsupported) and carries the user property [`MANAGED_PROPERTY`]` = 1`.
//! * Remove deletes the record first, then runs `zfs destroy -r`, which also takes snapshots
//!   someone else made on the dataset (an autosnapshot tool), so they never wedge removal. A
//!   failing destroy does not fail the removal: the dataset is recorded as pending, reported,
//!   and retried by [`Snapshotter::cleanup`] (children first). A dataset already deleted
//!   behind berth's back is reported and counted as removed.
//! * At open, and only then, one `zfs list` of the parent's direct children reconciles the
//!   pool with the records: datasets marked as berth's with no record are destroyed (left
//!   over by a crash or a failed destroy), unknown datasets are left alone and reported.
//!
//! A parent dataset belongs to one snapshotter root (one berthd): two roots sharing a parent
//! would destroy each other's datasets as orphans.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::filter::Filter;
use super::metastore::{self, MetaStore, Snapshot};
use super::{Error, Info, Kind, Labels, Mount, Result, Snapshotter, Usage};

/// The plugin id (`io.containerd.snapshotter.v1.zfs`).
pub const PLUGIN_ID: &str = "zfs";
/// The user property that marks a dataset as created by berth; only such datasets are ever
/// destroyed by the reconciliation at open.
pub const MANAGED_PROPERTY: &str = "org.berth:managed";
/// The name of the ZFS snapshot a commit takes (`<dataset>@snapshot`), which clones start from.
pub const SNAPSHOT_NAME: &str = "snapshot";
/// The plugin's section in berthd.toml.
pub const CONFIG_SECTION: &str = "io.containerd.snapshotter.v1.zfs";

/// Extended attributes stored in the inode (system-attribute based): no hidden xattr
/// directory per file, so no extra objects and writes per xattr.
pub const XATTR_PROPERTY: &str = "xattr=sa";
/// The mount option matching [`XATTR_PROPERTY`]. `mount.zfs` always passes an xattr option;
/// a plain mount(2) without one leaves user xattrs unsupported (`EOPNOTSUPP`).
pub const XATTR_MOUNT_OPTION: &str = "saxattr";

/// How many recent commands [`Runner::recent`] keeps.
const LOG_KEEP: usize = 1024;

/// A ZFS command or the plugin configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// The `zfs` program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A `zfs` command exited with an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A `zfs` command printed something that is not what was asked for.
    #[error("unexpected output of `{command}`: {output:?}")]
    Output {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
    /// The plugin's configuration is invalid.
    #[error("[plugins.\"{CONFIG_SECTION}\"]: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
}

impl ZfsError {
    /// True when the command failed because the dataset it names does not exist.
    pub fn is_missing_dataset(&self) -> bool {
        matches!(self, ZfsError::Command { stderr, .. } if stderr.contains("does not exist"))
    }
}

/// `[plugins."io.containerd.snapshotter.v1.zfs"]` in berthd.toml.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZfsConfig {
    /// The parent dataset (e.g. `tank/berth`); must exist. Empty: the plugin is skipped.
    pub dataset: String,
    /// The `zfs` program.
    pub zfs_path: PathBuf,
    /// Make `zfs` the engine's default snapshotter.
    pub default: bool,
}

impl Default for ZfsConfig {
    fn default() -> Self {
        ZfsConfig {
            dataset: String::new(),
            zfs_path: "/usr/sbin/zfs".into(),
            default: false,
        }
    }
}

impl ZfsConfig {
    /// The plugin's section of berthd's `[plugins]` (defaults when absent).
    pub fn from_plugins(
        plugins: &BTreeMap<String, toml::Value>,
    ) -> std::result::Result<Self, ZfsError> {
        let Some(v) = plugins.get(CONFIG_SECTION) else {
            return Ok(ZfsConfig::default());
        };
        let cfg: ZfsConfig =
            v.clone()
                .try_into()
                .map_err(|e: toml::de::Error| ZfsError::Config {
                    reason: e.message().to_string(),
                })?;
        if cfg.dataset.starts_with('/') || cfg.dataset.ends_with('/') || cfg.dataset.contains('@') {
            return Err(ZfsError::Config {
                reason: format!(
                    "dataset {:?} is not a dataset name (pool/path, no leading or trailing '/', no '@')",
                    cfg.dataset
                ),
            });
        }
        Ok(cfg)
    }
}

/// Runs `zfs` commands and counts them, so tests can check that each operation runs a
/// constant number and that none lists the pool.
#[derive(Debug)]
pub struct Runner {
    program: PathBuf,
    count: AtomicU64,
    log: Mutex<VecDeque<String>>,
}

impl Runner {
    /// A runner of `program` (normally `/usr/sbin/zfs`).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Runner {
            program: program.into(),
            count: AtomicU64::new(0),
            log: Mutex::new(VecDeque::new()),
        }
    }

    /// Runs `zfs <args>` and returns its standard output.
    pub fn run(&self, args: &[&str]) -> std::result::Result<String, ZfsError> {
        let line = format!("zfs {}", args.join(" "));
        self.count.fetch_add(1, Ordering::Relaxed);
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if log.len() == LOG_KEEP {
                log.pop_front();
            }
            log.push_back(line.clone());
        }
        let out = Command::new(&self.program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ZfsError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        if !out.status.success() {
            return Err(ZfsError::Command {
                command: line,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// How many commands ran so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The most recent command lines (up to 1024), oldest first.
    pub fn recent(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// The ZFS snapshotter; see the module documentation.
pub struct Zfs {
    dataset: String,
    runner: Runner,
    store: RwLock<Option<Arc<MetaStore>>>,
    /// Datasets whose destroy failed, retried by cleanup.
    pending: Mutex<BTreeSet<u64>>,
    /// What reconciliation and removals could not handle or found odd, for the operator.
    reports: Mutex<Vec<String>>,
}

impl Zfs {
    /// Opens the snapshotter with its records under `root` and its datasets under
    /// `cfg.dataset`, and reconciles the two (one `zfs list` of the parent's children).
    /// Fails when the parent dataset does not exist.
    pub fn open(root: &Path, cfg: &ZfsConfig) -> Result<Self> {
        if cfg.dataset.is_empty() {
            return Err(ZfsError::Config {
                reason: "no parent dataset configured (set `dataset`, e.g. \"tank/berth\")".into(),
            }
            .into());
        }
        std::fs::create_dir_all(root).map_err(Error::io("create directory", root))?;
        let store = MetaStore::open(&root.join(metastore::FILE_NAME))?;
        let zfs = Zfs {
            dataset: cfg.dataset.clone(),
            runner: Runner::new(&cfg.zfs_path),
            store: RwLock::new(Some(Arc::new(store))),
            pending: Mutex::new(BTreeSet::new()),
            reports: Mutex::new(Vec::new()),
        };
        zfs.reconcile()?;
        Ok(zfs)
    }

    /// What the conformance suite may expect: mounts and chown as root, read-only views,
    /// renames of lower directories (a clone is a full file system).
    #[cfg(feature = "conformance")]
    pub fn suite_capabilities() -> super::testsuite::Capabilities {
        super::testsuite::Capabilities {
            rename_lower_directory: true,
            view_readonly: true,
            ..super::testsuite::Capabilities::host_default()
        }
    }

    /// The command runner (its count and recent commands).
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The parent dataset.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// Datasets whose destroy failed and is to be retried.
    pub fn pending(&self) -> Vec<String> {
        self.lock_pending()
            .iter()
            .map(|id| self.dataset_of(*id))
            .collect()
    }

    /// The dataset holding snapshot `key` (for tools and tests).
    pub fn dataset_for(&self, key: &str) -> Result<String> {
        let s = self.store()?.read(|tx| tx.snapshot(key))?;
        Ok(self.dataset_of(s.id))
    }

    /// What reconciliation and removals reported (foreign datasets, datasets deleted behind
    /// berth's back, failed destroys), oldest first.
    pub fn reports(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<u64>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn report(&self, msg: String) {
        tracing::warn!(dataset = %self.dataset, "{msg}");
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg);
    }

    fn store(&self) -> Result<Arc<MetaStore>> {
        self.store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(Error::Closed)
    }

    /// The dataset of snapshot `id`.
    pub fn dataset_of(&self, id: u64) -> String {
        format!("{}/{id}", self.dataset)
    }

    fn run(&self, args: &[&str]) -> Result<String> {
        Ok(self.runner.run(args)?)
    }

    /// The one listing: the parent's direct children, against the records.
    fn reconcile(&self) -> Result<()> {
        let ids = self.store()?.read(|tx| tx.ids())?;
        let prop = format!("name,{MANAGED_PROPERTY}");
        let out = self.run(&[
            "list",
            "-H",
            "-p",
            "-o",
            &prop,
            "-t",
            "filesystem,volume",
            "-r",
            "-d",
            "1",
            &self.dataset,
        ])?;
        let prefix = format!("{}/", self.dataset);
        let mut orphans = Vec::new();
        let mut seen = BTreeSet::new();
        for line in out.lines() {
            let (name, managed) = line.split_once('\t').unwrap_or((line, "-"));
            let Some(child) = name.strip_prefix(&prefix) else {
                continue; // the parent itself
            };
            if let Ok(id) = child.parse::<u64>() {
                seen.insert(id);
            }
            match (child.parse::<u64>(), managed == "1") {
                (Ok(id), _) if ids.contains(&id) => {}
                (Ok(id), true) => orphans.push(id),
                (Err(_), true) => self.report(format!(
                    "{name} carries {MANAGED_PROPERTY}=1 but is not named by an id; left alone"
                )),
                (_, false) => self.report(format!(
                    "{name} is not berth's ({MANAGED_PROPERTY} is not set); left alone"
                )),
            }
        }
        for id in ids.difference(&seen) {
            self.report(format!(
                "{} is missing (deleted outside berth?): snapshot records with id {id} have no data",
                self.dataset_of(*id)
            ));
        }
        // Children (clones) have higher ids than their origins: destroy them first.
        orphans.sort_unstable_by(|a, b| b.cmp(a));
        for id in orphans {
            tracing::info!(dataset = %self.dataset_of(id), "destroying a dataset berth created that has no record");
            self.destroy(id);
        }
        Ok(())
    }

    /// `zfs destroy -r` of snapshot `id`'s dataset (with its `@snapshot` and any foreign
    /// snapshots). Never fails: a failure is recorded as pending and reported.
    fn destroy(&self, id: u64) -> bool {
        let ds = self.dataset_of(id);
        match self.runner.run(&["destroy", "-r", &ds]) {
            Ok(_) => {
                self.lock_pending().remove(&id);
                true
            }
            Err(e) if e.is_missing_dataset() => {
                self.lock_pending().remove(&id);
                self.report(format!(
                    "{ds} was already gone (deleted outside berth); its record is removed"
                ));
                true
            }
            Err(e) => {
                self.lock_pending().insert(id);
                self.report(format!(
                    "cannot destroy {ds}, will retry at the next cleanup: {e}"
                ));
                false
            }
        }
    }

    /// Size (`used`) and object count (sum of `zfs userspace` objused) of a dataset.
    fn measure(&self, id: u64) -> Result<Usage> {
        let ds = self.dataset_of(id);
        let used = self.run(&["get", "-H", "-p", "-o", "value", "used", &ds])?;
        let size = used.trim().parse::<i64>().map_err(|_| ZfsError::Output {
            command: format!("zfs get -H -p -o value used {ds}"),
            output: used.clone(),
        })?;
        let objs = self.run(&["userspace", "-H", "-p", "-o", "objused", &ds])?;
        // "-" when the pool lacks userobj_accounting: the count is then unknown (0).
        let inodes = objs
            .lines()
            .filter_map(|l| l.trim().parse::<i64>().ok())
            .sum();
        Ok(Usage { size, inodes })
    }

    fn mounts_for(&self, s: &Snapshot) -> Vec<Mount> {
        vec![Mount {
            fs_type: "zfs".into(),
            source: self.dataset_of(s.id),
            target: None,
            options: vec![
                if s.kind == Kind::View { "ro" } else { "rw" }.into(),
                XATTR_MOUNT_OPTION.into(),
            ],
        }]
    }

    fn create(&self, kind: Kind, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let store = self.store()?;
        let mut made: Option<u64> = None;
        let r = store.write(|tx| {
            let snap = tx.create(kind, key, parent, labels)?;
            let ds = self.dataset_of(snap.id);
            let managed = format!("{MANAGED_PROPERTY}=1");
            let mut args = vec![
                "-o",
                "mountpoint=legacy",
                "-o",
                XATTR_PROPERTY,
                "-o",
                &managed,
            ];
            if kind == Kind::View {
                args.extend(["-o", "readonly=on"]);
            }
            let origin;
            match snap.parent_ids.first() {
                None => {
                    let mut a = vec!["create"];
                    a.extend(&args);
                    a.push(&ds);
                    self.run(&a)?;
                }
                Some(&pid) => {
                    origin = format!("{}@{SNAPSHOT_NAME}", self.dataset_of(pid));
                    let mut a = vec!["clone"];
                    a.extend(&args);
                    a.extend([origin.as_str(), ds.as_str()]);
                    self.run(&a)?;
                }
            }
            made = Some(snap.id);
            Ok(self.mounts_for(&snap))
        });
        if r.is_err() {
            // The record was not committed: the dataset must not outlive it.
            if let Some(id) = made {
                self.destroy(id);
            }
        }
        r
    }
}

impl Snapshotter for Zfs {
    fn stat(&self, key: &str) -> Result<Info> {
        self.store()?.read(|tx| tx.info(key))
    }

    fn update(&self, info: &Info, fieldpaths: &[&str]) -> Result<Info> {
        self.store()?.write(|tx| tx.update(info, fieldpaths))
    }

    fn usage(&self, key: &str) -> Result<Usage> {
        // Measured every time: commit records nothing (it runs only `zfs snapshot`), and a
        // committed snapshot's dataset is never mounted again, so its figures do not drift.
        let (snap, _) = self.store()?.read(|tx| tx.usage(key))?;
        self.measure(snap.id)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let s = self.store()?.read(|tx| tx.snapshot(key))?;
        if s.kind == Kind::Committed {
            return Err(Error::FailedPrecondition {
                op: "mount",
                key: key.to_string(),
                reason: "it is committed; make a view of it instead".into(),
            });
        }
        Ok(self.mounts_for(&s))
    }

    fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.store()?.write(|tx| {
            let snap = tx.snapshot(key)?;
            // One command: the usage is read when asked for (see `usage`); tx.commit refuses
            // a key that is not active with the precise reason.
            tx.commit(key, name, Usage::default(), labels)?;
            // Last: when it fails the transaction is dropped and the key stays active.
            let target = format!("{}@{SNAPSHOT_NAME}", self.dataset_of(snap.id));
            self.run(&["snapshot", &target])?;
            Ok(())
        })
    }

    fn remove(&self, key: &str) -> Result<()> {
        let (id, _) = self.store()?.write(|tx| tx.remove(key))?;
        self.destroy(id);
        Ok(())
    }

    fn walk(&self, filters: &[&str], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        let filter = Filter::parse(filters)?;
        let infos = self.store()?.read(|tx| tx.list(&filter))?;
        for i in &infos {
            f(i)?;
        }
        Ok(())
    }

    /// Retries the destroys that failed, children (higher ids) first. No listing.
    fn cleanup(&self) -> Result<()> {
        self.store()?;
        let mut ids: Vec<u64> = self.lock_pending().iter().copied().collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        for id in ids {
            self.destroy(id);
        }
        Ok(())
    }

    fn close(&self) -> Result<()> {
        self.store.write().unwrap_or_else(|e| e.into_inner()).take();
        Ok(())
    }
}

/// Why the zfs plugin cannot load on this node, when a precondition is missing: the kernel
/// module is not loaded (`/sys/module/zfs`), or no parent dataset is configured.
pub fn unavailable_reason(cfg: &ZfsConfig) -> Option<String> {
    if !Path::new("/sys/module/zfs").exists() {
        return Some("the zfs kernel module is not loaded (/sys/module/zfs is missing)".into());
    }
    if cfg.dataset.is_empty() {
        return Some(format!(
            "no parent dataset configured: set dataset in [plugins.\"{CONFIG_SECTION}\"]"
        ));
    }
    None
}

/// Loads the zfs snapshotter into `out` when its preconditions hold, with its records under
/// `<root>/io.containerd.snapshotter.v1.zfs`, and records the outcome as a plugin: Skipped
/// with the reason when the module or the parent dataset is missing (`berthctl plugins ls`),
/// Error for an invalid configuration.
pub fn register(
    root: &Path,
    plugins: &BTreeMap<String, toml::Value>,
    out: &mut super::Snapshotters,
    registry: &mut crate::plugins::Registry,
) {
    use crate::plugins::Status;
    let dir = root.join(format!("{}.{PLUGIN_ID}", super::set::PLUGIN_TYPE));
    let (status, dataset) = match ZfsConfig::from_plugins(plugins) {
        Err(e) => (Status::Error(e.to_string()), String::new()),
        Ok(cfg) => {
            let status = match unavailable_reason(&cfg) {
                Some(why) => Status::Skipped(why),
                None => match Zfs::open(&dir, &cfg) {
                    Ok(z) => {
                        out.insert(PLUGIN_ID, Arc::new(z));
                        if cfg.default {
                            out.set_default(PLUGIN_ID);
                        }
                        Status::Ok
                    }
                    Err(e) => Status::Skipped(format!(
                        "parent dataset {:?} is unusable: {e}",
                        cfg.dataset
                    )),
                },
            };
            (status, cfg.dataset)
        }
    };
    let p = registry.register(super::set::PLUGIN_TYPE, PLUGIN_ID, status);
    p.exports.insert("root".into(), dir.display().to_string());
    if !dataset.is_empty() {
        p.exports.insert("dataset".into(), dataset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_errors() {
        let mut plugins = BTreeMap::new();
        assert_eq!(
            ZfsConfig::from_plugins(&plugins).unwrap(),
            ZfsConfig::default()
        );
        plugins.insert(
            CONFIG_SECTION.to_string(),
            toml::from_str::<toml::Value>("dataset = \"tank/berth\"\ndefault = true").unwrap(),
        );
        let c = ZfsConfig::from_plugins(&plugins).unwrap();
        assert_eq!(c.dataset, "tank/berth");
        assert!(c.default);
        plugins.insert(
            CONFIG_SECTION.to_string(),
            toml::from_str::<toml::Value>("datset = \"x\"").unwrap(),
        );
        let e = ZfsConfig::from_plugins(&plugins).unwrap_err().to_string();
        assert!(e.contains("datset"), "{e}");
        plugins.insert(
            CONFIG_SECTION.to_string(),
            toml::from_str::<toml::Value>("dataset = \"tank/berth@x\"").unwrap(),
        );
        assert!(ZfsConfig::from_plugins(&plugins).is_err());
    }

    #[test]
    fn runner_counts_and_reports_failures() {
        let r = Runner::new("/bin/false");
        let e = r.run(&["list"]).unwrap_err();
        assert!(matches!(e, ZfsError::Command { .. }), "{e}");
        assert_eq!(r.count(), 1);
        assert_eq!(r.recent(), ["zfs list"]);
        let missing = ZfsError::Command {
            command: "zfs destroy -r t/1".into(),
            status: "exit status: 1".into(),
            stderr: "cannot open 't/1': dataset does not exist".into(),
        };
        assert!(missing.is_missing_dataset());
    }

    #[test]
    fn open_without_dataset_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Zfs::open(dir.path(), &ZfsConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no parent dataset configured"), "{e}");
    }
}
