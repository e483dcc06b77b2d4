//! Containers: records in the metadata database (`containers` table) with their rootfs
//! snapshot.
//!
//! A create without a spec builds one server-side from the image config ([`super::spec`])
//! and [`RunOptions`], and prepares the container's snapshot (key = container id) on the
//! image's top snapshot. The id is reserved in memory first (a second concurrent create of the
//! same id fails at once with ALREADY_EXISTS) and the reservation is dropped on every path —
//! success, error, panic — by a guard; every failure after the snapshot exists removes it
//! again. So a failed create (bad spec, missing image, snapshot error) leaves the name free.
//! Create and delete publish `/containers/create` and `/containers/delete`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{spec, Error, Tasks};
use crate::metadata::{Container, Labels};

/// A container to create.
#[derive(Debug, Clone, Default)]
pub struct NewContainer {
    /// Its id: an identifier, unique in the namespace.
    pub id: String,
    /// The image it runs (its config and top snapshot); empty: none.
    pub image: String,
    /// The runtime handler; empty: the default.
    pub runtime: String,
    /// The snapshotter of its rootfs; empty: the default.
    pub snapshotter: String,
    /// An OCI runtime spec as given; empty: generated from the image and `options`.
    pub spec: Vec<u8>,
    pub labels: Labels,
    /// What to run, when the spec is generated.
    pub options: RunOptions,
}

/// What `berthctl run` (or a boot container) asks for on top of the image config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Command; empty: entrypoint + cmd of the image.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries over the image's.
    pub env: Vec<String>,
    /// `user[:group]` or `uid[:gid]`; empty: the image's.
    pub user: String,
    /// `""` or `"none"` (own network namespace) or `"host"`.
    pub net: String,
    pub mounts: Vec<spec::Bind>,
    /// memory.max in bytes.
    pub memory_limit: Option<i64>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub hostname: String,
    pub cwd: String,
}

/// Drops an id reservation on every path out of a create.
struct Reservation<'a> {
    set: &'a Mutex<HashSet<(String, String)>>,
    key: (String, String),
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .expect("reservations lock")
            .remove(&self.key);
    }
}

impl Tasks {
    /// Creates container `c` in `ns` (blocking) and publishes `/containers/create`.
    pub fn create_container(&self, ns: &str, c: NewContainer) -> Result<Container, Error> {
        let out = self.create_record(ns, c)?;
        self.publish(
            ns,
            "/containers/create",
            serde_json::json!({"id": out.id, "image": out.image, "runtime": out.runtime}),
        );
        Ok(out)
    }

    fn create_record(&self, ns: &str, c: NewContainer) -> Result<Container, Error> {
        crate::metadata::validate::identifier("container", &c.id)?;
        let key = (ns.to_owned(), c.id.clone());
        if !self
            .reserved
            .lock()
            .expect("reservations lock")
            .insert(key.clone())
        {
            return Err(Error::AlreadyExists(format!(
                "container {:?} in namespace {ns:?}: a create of the same id is in progress",
                c.id
            )));
        }
        let _reservation = Reservation {
            set: &self.reserved,
            key,
        };
        if self.db().containers().get(ns, &c.id).is_ok() {
            return Err(Error::AlreadyExists(format!(
                "container {:?} in namespace {ns:?}",
                c.id
            )));
        }
        let (runtime, _) = self
            .runtimes
            .read()
            .expect("runtimes lock")
            .get(&c.runtime)?;
        // The image: its config for the spec, its top snapshot for the rootfs.
        let (config, chain, resolved) = if c.image.is_empty() {
            (None, None, None)
        } else {
            let image = self.db().images().get(ns, &c.image)?;
            let target = crate::images::descriptor(
                &image.target.media_type,
                &image.target.digest,
                image.target.size,
            );
            let resolved = crate::images::resolve(
                self.storage.content.as_ref(),
                &target,
                &crate::images::Platform::default(),
            )
            .map_err(|e| {
                Error::FailedPrecondition(format!(
                    "image {:?}: {}",
                    c.image,
                    berth_api::errdefs::chain(&e)
                ))
            })?;
            (
                Some(resolved.config.clone()),
                resolved.top_chain_id(),
                Some(resolved),
            )
        };
        let spec_bytes = if !c.spec.is_empty() {
            spec::parse(&c.spec)?;
            c.spec.clone()
        } else {
            let o = c.options;
            let opts = spec::Options {
                args: o.args,
                env: o.env,
                user: o.user,
                host_network: match o.net.as_str() {
                    "" | "none" => false,
                    "host" => true,
                    other => {
                        return Err(Error::InvalidSpec(format!(
                            "network {other:?}: expected \"none\" or \"host\""
                        )))
                    }
                },
                binds: o.mounts,
                memory_limit: o.memory_limit,
                cpus: o.cpus,
                pids_limit: o.pids_limit,
                hostname: o.hostname,
                cwd: o.cwd,
            };
            spec::generate(ns, &c.id, config.as_ref(), &opts)?
        };
        let snapshotter = if c.snapshotter.is_empty() {
            self.snapshotters
                .default_id()
                .unwrap_or("overlayfs")
                .to_owned()
        } else {
            c.snapshotter.clone()
        };
        let mut rec = Container {
            id: c.id.clone(),
            image: c.image.clone(),
            snapshotter: String::new(),
            snapshot_key: String::new(),
            runtime,
            spec: spec_bytes,
            labels: c.labels,
            created_at: SystemTime::now(),
            updated_at: SystemTime::now(),
        };
        // The rootfs snapshot, removed again if the record cannot be stored.
        if let Some(chain) = &chain {
            let sn = self.snapshotters.lookup(&snapshotter).ok_or_else(|| {
                Error::InvalidSpec(format!("snapshotter {snapshotter:?} is not loaded"))
            })?;
            // An image not unpacked for this snapshotter yet (pulled for another one, or
            // still being unpacked by its import: the demo image just after boot) is
            // unpacked here, as `ctr run` does; a concurrent unpack of the same chain is
            // harmless (the second commit yields to the first).
            let top = crate::unpack::backend_name(ns, chain);
            let unpacked =
                matches!(sn.stat(&top), Ok(info) if info.kind == crate::snapshots::Kind::Committed);
            if let (false, Some(resolved)) = (unpacked, &resolved) {
                crate::unpack::unpack(
                    self.db(),
                    &self.storage.content,
                    ns,
                    &snapshotter,
                    sn.as_ref(),
                    resolved,
                    None,
                )
                .map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "image {:?}: unpacking it for snapshotter {snapshotter:?}: {}",
                        c.image,
                        berth_api::errdefs::chain(&e)
                    ))
                })?;
            }
            let backend = format!("{ns}/{}", c.id);
            let _guard = self.db().resource_guard();
            // The label marks a backend snapshot the engine made for a record: without it the
            // start-up reconciliation (and GC) do not count it as present, and berthd's next
            // start dropped the record of every container's rootfs (a created container then
            // failed to start: "snapshot … not found").
            let labels = [(
                crate::unpack::LABEL_SNAPSHOT_REF.to_string(),
                backend.clone(),
            )]
            .into_iter()
            .collect();
            sn.prepare(&backend, &crate::unpack::backend_name(ns, chain), labels)
                .map_err(|source| Error::Snapshot {
                    key: backend.clone(),
                    source: Box::new(source),
                })?;
            let srec = crate::metadata::SnapshotRecord::new(
                snapshotter.clone(),
                c.id.clone(),
                backend,
                Some(chain.to_string()),
                Default::default(),
            );
            rec.snapshotter = snapshotter;
            rec.snapshot_key = c.id.clone();
            let stored = self.db().containers().create_with_snapshot(ns, srec, rec);
            return stored.map_err(|e| {
                // Neither record was stored (one transaction): only the backend's snapshot.
                let _ = sn.remove(&format!("{ns}/{}", c.id));
                e.into()
            });
        }
        Ok(self.db().containers().create(ns, rec)?)
    }

    /// Deletes container `id` of `ns` and its snapshot (blocking) and publishes
    /// `/containers/delete`. Refused while it has a task.
    pub fn delete_container(&self, ns: &str, id: &str) -> Result<(), Error> {
        if self
            .tasks
            .lock()
            .expect("tasks lock")
            .contains_key(&(ns.to_owned(), id.to_owned()))
        {
            return Err(Error::FailedPrecondition(format!(
                "container {id:?} has a task: delete the task first"
            )));
        }
        // Both records in one transaction, before the backend removes the snapshot's data.
        let (c, snapshot) = self.db().containers().delete_with_snapshot(ns, id)?;
        if let Some(r) = snapshot {
            if let Some(sn) = self.snapshotters.lookup(&c.snapshotter) {
                if let Err(e) = sn.remove(&r.backend_key) {
                    tracing::warn!(
                        container = id,
                        "cannot remove the container's snapshot: {e}"
                    );
                }
            }
        }
        self.publish(ns, "/containers/delete", serde_json::json!({"id": id}));
        Ok(())
    }

    /// Container `id` of `ns`.
    pub fn container(&self, ns: &str, id: &str) -> crate::metadata::Result<Container> {
        self.db().containers().get(ns, id)
    }

    /// The containers of `ns`.
    pub fn containers(&self, ns: &str) -> crate::metadata::Result<Vec<Container>> {
        self.db().containers().list(ns)
    }

    /// Updates the fields of container `c.id` that `mask` names (empty: labels, image,
    /// runtime and spec). Its snapshot cannot change; a new spec must parse.
    pub fn update_container(
        &self,
        ns: &str,
        c: Container,
        mask: &[String],
    ) -> Result<Container, Error> {
        if mask.iter().any(|p| p == "spec") || (mask.is_empty() && !c.spec.is_empty()) {
            spec::parse(&c.spec)?;
        }
        let cur = self.db().containers().get(ns, &c.id)?;
        let rec = Container {
            snapshotter: cur.snapshotter,
            snapshot_key: cur.snapshot_key,
            created_at: cur.created_at,
            updated_at: cur.updated_at,
            ..c
        };
        let mask: Vec<String> = if mask.is_empty() {
            vec![
                "labels".into(),
                "image".into(),
                "runtime".into(),
                "spec".into(),
            ]
        } else {
            mask.to_vec()
        };
        if mask
            .iter()
            .any(|m| m == "snapshotter" || m == "snapshot_key")
        {
            return Err(Error::InvalidArgument(
                "a container's snapshot cannot be changed".into(),
            ));
        }
        Ok(self.db().containers().update(ns, rec, &mask)?)
    }
}
