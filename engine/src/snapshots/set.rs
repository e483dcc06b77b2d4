//! The snapshotters berthd loaded, by id, and their loading at start: the set every core
//! caller (unpack, containers, the collector, the Snapshots service) picks a snapshotter
//! from, with the default one for requests that name none.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::native::Native;
use super::overlay::{self, Overlay};
use super::{Error, Snapshotter};
use crate::plugins::{Registry, Status};

/// The plugin type of snapshotters, containerd's.
pub const PLUGIN_TYPE: &str = "io.containerd.snapshotter.v1";

/// The loaded snapshotters by id, and which one requests without a `snapshotter` use.
#[derive(Default, Clone)]
pub struct Snapshotters {
    map: BTreeMap<String, Arc<dyn Snapshotter>>,
    default: Option<String>,
}

impl Snapshotters {
    /// Adds a snapshotter; the first added becomes the default.
    pub fn insert(&mut self, id: &str, sn: Arc<dyn Snapshotter>) {
        if self.default.is_none() {
            self.default = Some(id.to_string());
        }
        self.map.insert(id.to_string(), sn);
    }

    /// Names of the loaded snapshotters.
    pub fn ids(&self) -> Vec<String> {
        self.map.keys().cloned().collect()
    }

    /// The snapshotter `id` when it is loaded.
    pub fn lookup(&self, id: &str) -> Option<Arc<dyn Snapshotter>> {
        self.map.get(id).cloned()
    }

    /// The snapshotter `id` (`""`: the default), or [`Error::NotLoaded`] naming the loaded
    /// ones (containerd's class for "snapshotter not loaded" is invalid argument).
    pub fn get(&self, id: &str) -> Result<Arc<dyn Snapshotter>, Error> {
        let id = if id.is_empty() {
            self.default.as_deref().unwrap_or("")
        } else {
            id
        };
        self.map.get(id).cloned().ok_or_else(|| Error::NotLoaded {
            id: id.to_owned(),
            loaded: self.ids(),
        })
    }

    /// Makes the loaded snapshotter `id` the default (e.g. `default = true` in the zfs
    /// plugin's section); false when it is not loaded.
    pub fn set_default(&mut self, id: &str) -> bool {
        let loaded = self.map.contains_key(id);
        if loaded {
            self.default = Some(id.to_string());
        }
        loaded
    }

    /// The default snapshotter's id.
    pub fn default_id(&self) -> Option<&str> {
        self.default.as_deref()
    }

    /// Closes every snapshotter (at shutdown).
    pub fn close_all(&self) {
        for (id, sn) in &self.map {
            if let Err(e) = sn.close() {
                tracing::warn!(snapshotter = %id, error = %e, "closing snapshotter failed");
            }
        }
    }
}

/// Opens berthd's snapshotters under `<root>/io.containerd.snapshotter.v1.<id>` and records
/// each as a plugin: overlayfs (default) unless the kernel lacks overlayfs or the root's
/// filesystem refuses it (Skipped, with the reason), then native (always possible). A failure
/// to open is recorded as the plugin's Error, never fatal to berthd.
pub fn load(root: &Path, registry: &mut Registry) -> Snapshotters {
    let mut out = Snapshotters::default();
    let dir = |id: &str| root.join(format!("{PLUGIN_TYPE}.{id}"));
    let overlay_root = dir("overlayfs");
    let overlay_status = match overlay::unsupported_reason() {
        Some(why) => Status::Skipped(why),
        None => match overlay::probe(&overlay_root).and_then(|()| Overlay::open(&overlay_root)) {
            Ok(o) => {
                out.insert("overlayfs", Arc::new(o));
                Status::Ok
            }
            Err(e) => Status::Skipped(format!(
                "overlayfs unusable on {}: {e}",
                overlay_root.display()
            )),
        },
    };
    let p = registry.register(PLUGIN_TYPE, "overlayfs", overlay_status);
    p.exports
        .insert("root".into(), overlay_root.display().to_string());
    let native_root = dir("native");
    let native_status = match Native::open(&native_root) {
        Ok(n) => {
            out.insert("native", Arc::new(n));
            Status::Ok
        }
        Err(e) => Status::Error(e.to_string()),
    };
    let p = registry.register(PLUGIN_TYPE, "native", native_status);
    p.exports
        .insert("root".into(), native_root.display().to_string());
    let svc = registry.register(
        "berth.service.v1",
        "snapshots",
        if out.default.is_some() {
            Status::Ok
        } else {
            Status::Error("no snapshotter could be loaded".into())
        },
    );
    svc.requires.push(PLUGIN_TYPE.into());
    if let Some(d) = &out.default {
        svc.exports.insert("default".into(), d.clone());
    }
    out
}
