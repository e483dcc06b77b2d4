//! The ZFS pool, brought up after `/var` and before berthd (`[zfs]` in init.toml).
//!
//! In a ZFS image (`berth-image build --zfs`) init loads the ZFS modules, imports the
//! configured pool without mounting anything (`zpool import -N`; the snapshotter mounts its
//! legacy datasets itself), and creates the datasets berthd needs. With no pool to import it
//! can create one, but only on a partition carrying the configured GPT label — the operator's
//! consent, as for the state partition — and never on a whole disk: without udev,
//! `zpool create` on a whole disk partitions it, then waits for partition device nodes that
//! nobody makes, and fails ("failed to detect device partitions").
//!
//! The pool is imported and created with `cachefile=none`: the root is read-only, and a boot
//! imports by scanning the labelled partition (or `/dev`) anyway. Nothing here is fatal: a
//! failure is one console line, and berthd then reports the zfs snapshotter as skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::console::Console;
use crate::modules::{ModuleIndex, Outcome};

/// `[zfs]` in init.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ZfsConfig {
    /// The pool to import at boot; `""` disables the ZFS stage.
    pub pool: String,
    /// GPT partition label of the pool's device: import scans only that partition, and when
    /// no pool can be imported one is created on it (when `create` is true). `""`: import
    /// scans `/dev`, never creates.
    pub label: String,
    /// Create the pool on the labelled partition when it holds none (first boot).
    pub create: bool,
    /// Datasets created (with parents, `mountpoint=none`) once the pool is up, e.g.
    /// `"tank/berth"` for the zfs snapshotter.
    pub datasets: Vec<String>,
    /// Modules loaded first (with their `modules.dep` dependencies).
    pub modules: Vec<String>,
    /// `zpool` program.
    pub zpool_path: PathBuf,
    /// `zfs` program.
    pub zfs_path: PathBuf,
}

impl Default for ZfsConfig {
    fn default() -> Self {
        ZfsConfig {
            pool: String::new(),
            label: String::new(),
            create: false,
            datasets: Vec::new(),
            modules: vec!["zfs".into()],
            zpool_path: "/usr/sbin/zpool".into(),
            zfs_path: "/usr/sbin/zfs".into(),
        }
    }
}

/// Why the pool could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// A program could not be started.
    #[error("cannot run {}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// More than one partition carries the label: refuse to guess.
    #[error(
        "{count} partitions carry the GPT label {label:?} ({names}); give each pool its own label"
    )]
    Ambiguous {
        /// The label.
        label: String,
        /// How many.
        count: usize,
        /// Their names.
        names: String,
    },
    /// The pool is not importable and creating it is not allowed or possible.
    #[error("pool {pool:?} cannot be imported ({reason}); import said: {import}")]
    NoPool {
        /// The pool.
        pool: String,
        /// Why it was not created.
        reason: String,
        /// What the import reported.
        #[source]
        import: Box<ZfsError>,
    },
}

/// What the stage did, for the console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolOutcome {
    /// `[zfs] pool` is empty.
    Disabled,
    /// Imported (from this device, when a label named it).
    Imported(Option<PathBuf>),
    /// Created on this partition.
    Created(PathBuf),
}

fn run(program: &Path, args: &[&str]) -> Result<String, ZfsError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ZfsError::Spawn {
            program: program.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(ZfsError::Command {
            command: format!("{} {}", program.display(), args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Loads the modules, imports or creates the pool, creates the datasets; reports on the
/// console and never fails the boot.
pub fn setup(config: &ZfsConfig, console: Console) -> PoolOutcome {
    if config.pool.is_empty() {
        return PoolOutcome::Disabled;
    }
    let started = Instant::now();
    load_modules(&config.modules, console);
    match bring_up(config, Path::new("/sys/class/block")) {
        Ok(outcome) => {
            let how = match &outcome {
                PoolOutcome::Imported(Some(d)) => format!("imported from {}", d.display()),
                PoolOutcome::Imported(None) => "imported".into(),
                PoolOutcome::Created(d) => format!("created on {}", d.display()),
                PoolOutcome::Disabled => String::new(),
            };
            let mut line = format!(
                "zfs: pool {} {how} in {} ms",
                config.pool,
                started.elapsed().as_millis()
            );
            for ds in &config.datasets {
                match run(
                    &config.zfs_path,
                    &["create", "-p", "-o", "mountpoint=none", ds],
                ) {
                    Ok(_) => line.push_str(&format!("; dataset {ds} ready")),
                    Err(e) => console.warn(&format!("zfs: dataset {ds}: {e}")),
                }
            }
            console.info(&line);
            outcome
        }
        Err(e) => {
            console.error(&format!(
                "zfs: {e}; the zfs snapshotter will be unavailable"
            ));
            PoolOutcome::Disabled
        }
    }
}

fn load_modules(names: &[String], console: Console) {
    if names.is_empty() {
        return;
    }
    let index = match ModuleIndex::for_running_kernel(Path::new("/")) {
        Ok(i) => i,
        Err(e) => {
            console.warn(&format!("zfs: cannot read the module index: {e}"));
            return;
        }
    };
    let mut loaded = Vec::new();
    for (name, result) in index.load(names) {
        match result {
            Ok(Outcome::Loaded) => loaded.push(name),
            Ok(_) => {}
            Err(e) => console.warn(&format!("zfs: {e}")),
        }
    }
    if !loaded.is_empty() {
        console.debug(&format!("zfs: loaded {}", loaded.join(" ")));
    }
}

/// Import, else create on the labelled partition.
fn bring_up(config: &ZfsConfig, sys_class_block: &Path) -> Result<PoolOutcome, ZfsError> {
    let device = if config.label.is_empty() {
        None
    } else {
        let found = crate::state_disk::find_labelled(sys_class_block, &config.label);
        match found.as_slice() {
            [] => None,
            [one] => Some(one.device.clone()),
            many => {
                return Err(ZfsError::Ambiguous {
                    label: config.label.clone(),
                    count: many.len(),
                    names: many
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    };
    let scan = device
        .as_deref()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "/dev".into());
    let import = run(
        &config.zpool_path,
        &[
            "import",
            "-N",
            "-o",
            "cachefile=none",
            "-d",
            &scan,
            &config.pool,
        ],
    );
    let import_err = match import {
        Ok(_) => return Ok(PoolOutcome::Imported(device)),
        Err(e) => e,
    };
    let no_pool = |reason: String, import: ZfsError| ZfsError::NoPool {
        pool: config.pool.clone(),
        reason,
        import: Box::new(import),
    };
    let Some(device) = device else {
        return Err(no_pool(
            if config.label.is_empty() {
                "no [zfs] label to create it on".into()
            } else {
                format!("no partition carries the GPT label {:?}", config.label)
            },
            import_err,
        ));
    };
    if !config.create {
        return Err(no_pool("[zfs] create is false".into(), import_err));
    }
    // Without -f, zpool refuses a partition that holds another file system or pool.
    run(
        &config.zpool_path,
        &[
            "create",
            "-o",
            "cachefile=none",
            "-m",
            "none",
            &config.pool,
            &device.display().to_string(),
        ],
    )
    .map_err(|e| {
        no_pool(
            format!("creating it on {} failed too: {e}", device.display()),
            import_err,
        )
    })?;
    Ok(PoolOutcome::Created(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_by_default() {
        let c = ZfsConfig::default();
        assert!(c.pool.is_empty());
        assert_eq!(c.modules, ["zfs"]);
    }

    #[test]
    fn refuses_ambiguous_labels() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["vdb1", "vdc1"] {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(
                d.join("uevent"),
                format!("DEVTYPE=partition\nPARTNAME=POOL\nDEVNAME={name}\n"),
            )
            .unwrap();
        }
        let c = ZfsConfig {
            pool: "tank".into(),
            label: "POOL".into(),
            create: true,
            ..ZfsConfig::default()
        };
        let e = bring_up(&c, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("2 partitions carry the GPT label \"POOL\" (vdb1, vdc1)"),
            "{e}"
        );
    }

    #[test]
    fn without_label_it_never_creates() {
        let dir = tempfile::tempdir().unwrap();
        let c = ZfsConfig {
            pool: "tank".into(),
            create: true,
            zpool_path: "/bin/false".into(),
            ..ZfsConfig::default()
        };
        let e = bring_up(&c, dir.path()).unwrap_err().to_string();
        assert!(e.contains("no [zfs] label to create it on"), "{e}");
    }
}
