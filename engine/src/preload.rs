//! Preloaded images: image archives shipped inside the OS image, imported when berthd starts.
//!
//! An edge node may boot with no network at all, and a diskless node starts every boot with
//! an empty `/var`. So the OS image can carry its workload's images as archives (OCI layout or
//! `docker save` tarballs) in a read-only directory, `/usr/share/berth/images` by default, and
//! berthd imports (and unpacks) every archive there at start, in the background, through the
//! same import path as `berthctl images import` (temporary lease, verified digests).
//!
//! Each image an archive produced is labelled [`SOURCE_LABEL`] with the archive's name, size
//! and modification time. An archive whose label is already on an image in the namespace is
//! skipped, so a node with a state disk imports each archive once, and a new OS image with a
//! changed archive (an A/B upgrade) imports it again. One bad archive is reported and the
//! others are still imported.
//!
//! Configuration, `[plugins."berth.preload.v1"]` in berthd.toml:
//! `dirs` (default `["/usr/share/berth/images"]`), `namespace` (default `"default"`),
//! `unpack` (default true) and `snapshotter` (default: the engine's default snapshotter).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::images::Platform;
use crate::snapshots::Snapshotters;
use crate::store::Store;

/// The plugin section in berthd.toml.
pub const PLUGIN: &str = "berth.preload.v1";
/// Label on every image a preloaded archive produced: `<file name>:<size>:<mtime>:<ctime>`.
pub const SOURCE_LABEL: &str = "berth.preload/source";
/// Where the OS image keeps its archives unless configured otherwise.
pub const DEFAULT_DIR: &str = "/usr/share/berth/images";

/// A bad `[plugins."berth.preload.v1"]` section.
#[derive(Debug, thiserror::Error)]
#[error("[plugins.\"{PLUGIN}\"] in {}: {message}", sources_display(.sources))]
pub struct PreloadConfigError {
    /// The config files the section may come from.
    pub sources: Vec<PathBuf>,
    /// What is wrong, with the key.
    pub message: String,
}

fn sources_display(sources: &[PathBuf]) -> String {
    if sources.is_empty() {
        return "the built-in defaults".into();
    }
    sources
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Section {
    dirs: Option<Vec<PathBuf>>,
    namespace: Option<String>,
    unpack: Option<bool>,
    snapshotter: Option<String>,
}

/// What to preload and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadConfig {
    /// Directories searched for `*.tar` archives (sorted by name within each directory).
    pub dirs: Vec<PathBuf>,
    /// Namespace the images go into.
    pub namespace: String,
    /// Unpack into the snapshotter too, so the first container start does not wait for it.
    pub unpack: bool,
    /// Snapshotter to unpack into ("" = the engine's default).
    pub snapshotter: String,
}

impl Default for PreloadConfig {
    fn default() -> Self {
        Self {
            dirs: vec![PathBuf::from(DEFAULT_DIR)],
            namespace: "default".into(),
            unpack: true,
            snapshotter: String::new(),
        }
    }
}

impl PreloadConfig {
    /// Reads `[plugins."berth.preload.v1"]` (absent: the defaults).
    pub fn from_plugins(
        plugins: &BTreeMap<String, toml::Value>,
        sources: &[PathBuf],
    ) -> Result<Self, PreloadConfigError> {
        let err = |message: String| PreloadConfigError {
            sources: sources.to_vec(),
            message,
        };
        let Some(value) = plugins.get(PLUGIN) else {
            return Ok(Self::default());
        };
        let section: Section = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().trim().to_string();
            err(if path == "." {
                inner
            } else {
                format!("{path}: {inner}")
            })
        })?;
        let mut cfg = Self::default();
        if let Some(dirs) = section.dirs {
            if let Some(rel) = dirs.iter().find(|d| !d.is_absolute()) {
                return Err(err(format!(
                    "dirs: {:?} must be an absolute path",
                    rel.display()
                )));
            }
            cfg.dirs = dirs;
        }
        if let Some(ns) = section.namespace {
            if ns.is_empty() {
                return Err(err("namespace: must not be empty".into()));
            }
            cfg.namespace = ns;
        }
        cfg.unpack = section.unpack.unwrap_or(cfg.unpack);
        cfg.snapshotter = section.snapshotter.unwrap_or_default();
        Ok(cfg)
    }
}

/// What happened to one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Imported: the image names it produced.
    Imported(Vec<String>),
    /// Already imported by an earlier start (an image carries its source label).
    AlreadyPresent,
    /// The import failed: why.
    Failed(String),
}

/// One archive and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The archive file.
    pub path: PathBuf,
    /// What happened.
    pub outcome: Outcome,
}

/// The `*.tar` files of the configured directories, sorted by name per directory; missing
/// directories are skipped (an image without preloaded archives has none).
fn archives(cfg: &PreloadConfig) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in &cfg.dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tar") && p.is_file())
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// `<file name>:<size>:<mtime ns>:<ctime ns>`: changes whenever the file is rewritten (a
/// rewrite of the same size within one second still changes the nanoseconds and the ctime),
/// and stays the same across boots of one OS image (its files carry the build's fixed times).
fn source_key(path: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path)?;
    let ns = |secs: i64, nsecs: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(format!(
        "{name}:{}:{}:{}",
        meta.len(),
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec())
    ))
}

/// Imports every archive not imported yet. Blocking: run it on a blocking thread.
pub fn run(
    storage: &Store,
    snapshotters: &Snapshotters,
    cfg: &PreloadConfig,
) -> Vec<ArchiveReport> {
    let mut reports = Vec::new();
    let present: Vec<String> = match storage.db.images().list(&cfg.namespace) {
        Ok(images) => images
            .into_iter()
            .filter_map(|i| i.labels.get(SOURCE_LABEL).cloned())
            .collect(),
        Err(_) => Vec::new(),
    };
    for path in archives(cfg) {
        let outcome = match import_one(storage, snapshotters, cfg, &path, &present) {
            Ok(o) => o,
            Err(e) => Outcome::Failed(e),
        };
        reports.push(ArchiveReport { path, outcome });
    }
    reports
}

fn import_one(
    storage: &Store,
    snapshotters: &Snapshotters,
    cfg: &PreloadConfig,
    path: &Path,
    present: &[String],
) -> Result<Outcome, String> {
    let key = source_key(path).map_err(|e| format!("cannot read: {e}"))?;
    if present.contains(&key) {
        return Ok(Outcome::AlreadyPresent);
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let imported = crate::transfer::import_blocking(
        storage,
        snapshotters,
        &cfg.namespace,
        file,
        &cfg.snapshotter,
        &Platform::default(),
        cfg.unpack,
    )
    .map_err(|e| berth_api::errdefs::chain(&e))?;
    let mut names = Vec::new();
    for image in imported {
        let mut record = storage
            .db
            .images()
            .get(&cfg.namespace, &image.name)
            .map_err(|e| format!("{}: {e}", image.name))?;
        record.labels.insert(SOURCE_LABEL.into(), key.clone());
        storage
            .db
            .images()
            .update(&cfg.namespace, record, &[format!("labels.{SOURCE_LABEL}")])
            .map_err(|e| format!("{}: cannot label: {e}", image.name))?;
        names.push(image.name);
    }
    Ok(Outcome::Imported(names))
}

/// Runs [`run`] and logs each archive's outcome (berthd calls this in the background).
pub fn run_logged(storage: &Store, snapshotters: &Snapshotters, cfg: &PreloadConfig) {
    let started = Instant::now();
    let reports = run(storage, snapshotters, cfg);
    for r in &reports {
        match &r.outcome {
            Outcome::Imported(names) => tracing::info!(
                archive = %r.path.display(),
                images = ?names,
                "preload: imported"
            ),
            Outcome::AlreadyPresent => tracing::debug!(
                archive = %r.path.display(),
                "preload: already imported"
            ),
            Outcome::Failed(why) => tracing::error!(
                archive = %r.path.display(),
                "preload: import failed: {why}"
            ),
        }
    }
    if !reports.is_empty() {
        tracing::info!(
            archives = reports.len(),
            namespace = %cfg.namespace,
            "preload: done in {:.3} s",
            started.elapsed().as_secs_f64()
        );
    }
}
