//! [`Tasks`]: the state of berthd's containers and tasks, shared by the Containers, Tasks and
//! Events services and the boot containers' supervisors. Its operations live with their
//! concern ([`super::containers`], [`super::lifecycle`], [`super::exec`], [`super::wait`],
//! [`super::adopt`]); this module holds the state, the lookups and the event bus.
//!
//! A task is a shim: `<state>/shims/<ns>/<id>/` is its bundle and home, and berthd keeps a
//! ttrpc client of its socket (`<state>/s/<hash>`, see [`super::shim`] and
//! [`super::shim_socket`]). At start, [`Tasks::open`] re-adopts every
//! shim found under the state dir; a shim that is gone but left an `exit` record reports that
//! exit.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_api::proto::shim_ttrpc;

use super::events::{Event, QUEUE};
use super::Error;
use crate::metadata::Db;
use crate::snapshots::Snapshotters;
use crate::store::Store;

/// A task as berthd knows it.
#[derive(Clone)]
pub(super) struct Task {
    pub(super) dir: PathBuf,
    /// `None` when the shim is gone (its exit record, if any, is in `dir`).
    pub(super) shim: Option<shim_ttrpc::ShimClient>,
}

/// berthd's containers and tasks.
pub struct Tasks {
    pub(super) storage: Arc<Store>,
    pub(super) snapshotters: Snapshotters,
    pub(super) state_dir: PathBuf,
    pub(super) tasks: Mutex<HashMap<(String, String), Task>>,
    /// Container ids being created (a second create of the same id fails at once).
    pub(super) reserved: Mutex<HashSet<(String, String)>>,
    events: tokio::sync::broadcast::Sender<Event>,
    /// The runtime handlers (berthd's configuration; only `berth` until set).
    pub(super) runtimes: std::sync::RwLock<super::runtimes::Runtimes>,
    /// Set when berthd stops: streams that last as long as their client (stdio attaches)
    /// end then, instead of holding the stop for ttrpc's 10 s.
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Tasks {
    /// Opens the task state and re-adopts the shims found under `<state>/shims`.
    pub async fn open(storage: Arc<Store>, snapshotters: Snapshotters, state: &Path) -> Arc<Self> {
        let t = Arc::new(Self {
            storage,
            snapshotters,
            state_dir: state.to_path_buf(),
            tasks: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashSet::new()),
            events: tokio::sync::broadcast::channel(QUEUE).0,
            runtimes: Default::default(),
            stopping: tokio::sync::watch::channel(false).0,
        });
        t.adopt().await;
        t
    }

    /// Sets the runtime handlers from berthd's configuration.
    pub fn set_runtimes(&self, r: super::runtimes::Runtimes) {
        *self.runtimes.write().expect("runtimes lock") = r;
    }

    /// berthd is stopping: long streams (stdio attaches) end now (the processes go on).
    pub fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    /// Becomes true when berthd stops (see [`Tasks::stop_streams`]).
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Sends an event to the current subscribers (none: dropped).
    pub fn publish(&self, ns: &str, topic: &str, event: serde_json::Value) {
        let _ = self.events.send(Event {
            timestamp: SystemTime::now(),
            namespace: ns.to_owned(),
            topic: topic.to_owned(),
            event,
        });
    }

    /// A receiver of every event published from now on (a subscriber too slow for
    /// [`QUEUE`] queued events misses the oldest and is told how many).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// The task's directory (`<state>/shims/<ns>/<id>`: its `log` is the container's
    /// output), whether or not the task exists.
    pub fn task_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.state_dir.join("shims").join(ns).join(id)
    }

    /// The socket of task `id`'s shim ([`super::shim_socket`]).
    pub fn shim_socket(&self, ns: &str, id: &str) -> PathBuf {
        super::shim_socket::path(&self.state_dir, ns, id)
    }

    pub(super) fn task(&self, ns: &str, id: &str) -> Result<Task, Error> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .get(&(ns.to_owned(), id.to_owned()))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {id:?} in namespace {ns:?}")))
    }

    pub(super) fn shim(&self, ns: &str, id: &str) -> Result<shim_ttrpc::ShimClient, Error> {
        self.task(ns, id)?.shim.ok_or_else(|| {
            Error::FailedPrecondition(format!("the shim of task {id:?} is gone; delete the task"))
        })
    }

    pub(super) fn db(&self) -> &Db {
        &self.storage.db
    }

    /// The ids of `ns`'s tasks, sorted.
    pub fn ids(&self, ns: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks
            .lock()
            .expect("tasks lock")
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}
