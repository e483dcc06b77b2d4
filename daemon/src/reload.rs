//! Reloading berthd's configuration while it runs (SIGHUP and the Config.Reload call).
//!
//! A reload reads the files again and checks all of the new configuration (the file itself,
//! the registry section, the collector's schedule) before it changes anything: an invalid
//! configuration is refused with its error (file, line, key) and the one in force stays.
//! Then the live parts are swapped in: `[debug] level` (the log filter), the registry
//! settings ([`LiveRegistry`]: endpoints, mirrors, credentials) and the collector's schedule
//! (its task is restarted). What only a restart can change (`root`, `state`, `[ttrpc]`, the
//! other plugin sections, read once at start) is reported and left as it runs.
//!
//! The hosts directory itself needs no reload: it is read on every resolve.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::{error, info, warn};

use berth_engine::config::{Config, LogLevel};
use berth_engine::metadata::gc::Schedule;
use berth_engine::remotes::config::{LiveRegistry, RegistryConfig, RegistryConfigError, PLUGIN};
use berth_engine::store::{OpenError, Store, GC_PLUGIN};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files could not be read or are invalid.
    #[error("{0}")]
    Load(String),
    /// The registry section is invalid.
    #[error(transparent)]
    Registry(#[from] RegistryConfigError),
    /// The collector's section is invalid.
    #[error(transparent)]
    Gc(#[from] OpenError),
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Settings now in force with new values: `debug.level`, `registry`, `gc`.
    pub applied: Vec<String>,
    /// Changed settings that take effect after a restart of berthd.
    pub needs_restart: Vec<String>,
    /// Deprecation warnings of the new configuration.
    pub warnings: Vec<String>,
    /// The files read.
    pub sources: Vec<PathBuf>,
}

/// Loads the configuration the way berthd did at start (file, imports, command-line
/// overrides).
pub type LoadFn = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;
/// Sets the log filter.
pub type SetLevelFn = Box<dyn Fn(LogLevel) + Send + Sync>;

/// The collector's scheduler task, restarted when its schedule changes.
pub struct GcTask {
    storage: Arc<Store>,
    root: PathBuf,
    schedule: Schedule,
    task: tokio::task::JoinHandle<()>,
}

impl GcTask {
    /// Spawns the scheduler with the schedule `storage` was opened with.
    pub fn spawn(storage: Arc<Store>, root: PathBuf) -> Self {
        let schedule = storage.schedule.clone();
        let task = Self::start(&storage, &root, schedule.clone());
        Self {
            storage,
            root,
            schedule,
            task,
        }
    }

    fn start(storage: &Store, root: &std::path::Path, s: Schedule) -> tokio::task::JoinHandle<()> {
        tokio::spawn(berth_engine::metadata::gc::run_scheduler(
            s,
            root.to_path_buf(),
            storage.db.clone(),
            storage.content.clone(),
            storage.sweeper.clone(),
            storage.gc.clone(),
            |_, _| {},
        ))
    }

    fn set(&mut self, s: Schedule) {
        self.task.abort();
        self.task = Self::start(&self.storage, &self.root, s.clone());
        self.schedule = s;
    }
}

struct State {
    running: Config,
    gc: Option<GcTask>,
}

/// Owns the configuration in force and applies reloads one at a time.
pub struct Reloader {
    load: LoadFn,
    set_level: SetLevelFn,
    registry: LiveRegistry,
    state: tokio::sync::Mutex<State>,
}

impl Reloader {
    /// `running` is the configuration berthd started with; `gc` its collector task (None
    /// when the daemon runs none).
    pub fn new(
        running: Config,
        load: LoadFn,
        set_level: SetLevelFn,
        registry: LiveRegistry,
        gc: Option<GcTask>,
    ) -> Self {
        Self {
            load,
            set_level,
            registry,
            state: tokio::sync::Mutex::new(State { running, gc }),
        }
    }

    /// The live registry settings (shared with pulls and the Registry service).
    pub fn registry(&self) -> &LiveRegistry {
        &self.registry
    }

    /// Reads the configuration again and applies what can be applied live.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let mut st = self.state.lock().await;
        let new = (self.load)().map_err(ReloadError::Load)?;
        // Check everything before changing anything.
        let registry = RegistryConfig::from_plugins(&new.plugins, &new.sources)?;
        let schedule = berth_engine::store::schedule(new.plugins.get(GC_PLUGIN))?;

        let mut report = ReloadReport {
            warnings: registry.warnings(),
            sources: new.sources.clone(),
            ..Default::default()
        };
        let old = &st.running;
        if new.debug.level != old.debug.level {
            (self.set_level)(new.debug.level);
            info!(from = %old.debug.level, to = %new.debug.level, "reload: debug.level changed");
            report.applied.push("debug.level".into());
        }
        if *self.registry.current() != registry {
            self.registry.replace(registry);
            info!("reload: registry settings changed");
            report.applied.push("registry".into());
        }
        if let Some(gc) = st.gc.as_mut() {
            if gc.schedule != schedule {
                info!(from = ?gc.schedule, to = ?schedule, "reload: gc schedule changed");
                gc.set(schedule);
                report.applied.push("gc".into());
            }
        }
        let old = &st.running;
        if old.root != new.root {
            report.needs_restart.push("root".into());
        }
        if old.state != new.state {
            report.needs_restart.push("state".into());
        }
        if old.ttrpc != new.ttrpc {
            report.needs_restart.push("ttrpc".into());
        }
        let live = [PLUGIN, GC_PLUGIN];
        let mut ids: Vec<&String> = old.plugins.keys().chain(new.plugins.keys()).collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            if !live.contains(&id.as_str()) && old.plugins.get(id) != new.plugins.get(id) {
                report.needs_restart.push(format!("plugins.{id:?}"));
            }
        }
        for w in &report.warnings {
            warn!("{w}");
        }
        if report.needs_restart.is_empty() {
            info!(applied = ?report.applied, "configuration reloaded");
        } else {
            warn!(applied = ?report.applied, keys = ?report.needs_restart, "configuration reloaded; these changes take effect after a restart of berthd");
        }
        // What runs now: the live parts from the new files, the rest as started.
        let st = &mut *st;
        st.running.debug = new.debug;
        for id in live {
            match new.plugins.get(id) {
                Some(v) => st.running.plugins.insert(id.to_string(), v.clone()),
                None => st.running.plugins.remove(id),
            };
        }
        st.running.sources = new.sources;
        Ok(report)
    }

    /// [`Reloader::reload`] for SIGHUP: the outcome goes to the log only.
    pub async fn reload_logged(&self) {
        if let Err(e) = self.reload().await {
            error!("reload rejected, keeping the running configuration: {e}");
        }
    }

    /// Stops the collector task (at shutdown).
    pub async fn shutdown(&self) {
        if let Some(gc) = self.state.lock().await.gc.take() {
            gc.task.abort();
        }
    }
}
