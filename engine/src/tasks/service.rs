//! berthd's Containers and Tasks services.
//!
//! **Containers**: records in the metadata database (`containers` table). A create with
//! `RunOptions` builds the spec server-side from the image config ([`super::spec`]) and
//! prepares the container's snapshot (key = container id) on the image's top snapshot. The id
//! is reserved in memory first (a second concurrent create of the same id fails at once with
//! ALREADY_EXISTS) and the reservation is dropped on every path — success, error, panic —
//! by a guard; every failure after the snapshot exists removes it again. So a failed create
//! (bad spec, missing image, snapshot error) leaves the name free.
//!
//! **Tasks**: one shim per container ([`super::shim`]). Task creation mounts the snapshot on
//! `<state>/shims/<ns>/<id>/rootfs`, resolves the user in that rootfs, checks bind mount
//! kinds, writes `config.json`, starts the shim and connects to its socket. At start berthd
//! re-adopts every shim found under the state dir; a shim that is gone but left an `exit`
//! record reports that exit.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ttrpc::r#async::TtrpcContext;

use super::shim::read_exit;
use super::{spec, Error};
use berth_api::proto::{
    containers as cpb, containers_ttrpc, events as epb, events_ttrpc, shim as spb, shim_ttrpc,
    tasks as tpb, tasks_ttrpc,
};
use crate::metadata::{Container, Db};
use crate::snapshots::service::Snapshotters;
use crate::storage_api::{namespace, nanos, Storage};

/// How long berthd waits for a new shim to report.
const SHIM_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A task as berthd knows it.
#[derive(Clone)]
struct Task {
    dir: PathBuf,
    /// `None` when the shim is gone (its exit record, if any, is in `dir`).
    shim: Option<shim_ttrpc::ShimClient>,
}

/// State shared by the two services.
pub struct Tasks {
    storage: Arc<Storage>,
    snapshotters: Snapshotters,
    state_dir: PathBuf,
    tasks: Mutex<HashMap<(String, String), Task>>,
    reserved: Mutex<HashSet<(String, String)>>,
    events: tokio::sync::broadcast::Sender<epb::Envelope>,
    /// The runtime handlers (berthd's configuration; only `berth` until set).
    runtimes: std::sync::RwLock<super::runtimes::Runtimes>,
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

fn tt(e: Error) -> ttrpc::Error {
    e.to_ttrpc()
}

fn meta(e: crate::metadata::Error) -> Error {
    Error::Metadata(Box::new(e))
}

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

impl Tasks {
    /// Opens the task state and re-adopts the shims found under `<state>/shims`.
    pub async fn open(
        storage: Arc<Storage>,
        snapshotters: Snapshotters,
        state: &Path,
    ) -> Arc<Self> {
        let t = Arc::new(Self {
            storage,
            snapshotters,
            state_dir: state.to_path_buf(),
            tasks: Mutex::new(HashMap::new()),
            reserved: Mutex::new(HashSet::new()),
            events: tokio::sync::broadcast::channel(256).0,
            runtimes: Default::default(),
        });
        t.adopt().await;
        t
    }

    /// Sets the runtime handlers from berthd's configuration.
    pub fn set_runtimes(&self, r: super::runtimes::Runtimes) {
        *self.runtimes.write().expect("runtimes lock") = r;
    }

    /// Sends an event to the current subscribers (none: dropped).
    fn publish(&self, ns: &str, topic: &str, event: serde_json::Value) {
        let _ = self.events.send(epb::Envelope {
            timestamp: nanos(std::time::SystemTime::now()),
            namespace: ns.to_owned(),
            topic: topic.to_owned(),
            event: event.to_string(),
            ..Default::default()
        });
    }

    /// Publishes `/tasks/exit` when the shim's init exits (at once for an exit recorded
    /// while berthd was down).
    fn watch_exit(self: &Arc<Self>, ns: &str, id: &str, shim: shim_ttrpc::ShimClient) {
        let (t, ns, id) = (self.clone(), ns.to_owned(), id.to_owned());
        tokio::spawn(async move {
            if let Ok(w) = shim
                .wait(
                    ttrpc::context::Context::default(),
                    &spb::WaitRequest::default(),
                )
                .await
            {
                let p = w.process.into_option().unwrap_or_default();
                if let Some(n) = super::oom::container_oom_kills(&ns, &id).filter(|n| *n > 0) {
                    t.publish(
                        &ns,
                        "/tasks/oom",
                        serde_json::json!({"container_id": id, "oom_kills": n}),
                    );
                }
                t.publish(
                    &ns,
                    "/tasks/exit",
                    serde_json::json!({"container_id": id, "pid": p.pid,
                        "exit_status": p.exit_status, "exited_at": p.exited_at}),
                );
            }
        });
    }

    fn shim_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.state_dir.join("shims").join(ns).join(id)
    }

    async fn adopt(self: &Arc<Self>) {
        let Ok(nss) = std::fs::read_dir(self.state_dir.join("shims")) else {
            return;
        };
        for ns in nss.flatten() {
            let Ok(ids) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for id in ids.flatten() {
                let (nsn, idn) = (
                    ns.file_name().to_string_lossy().into_owned(),
                    id.file_name().to_string_lossy().into_owned(),
                );
                let dir = id.path();
                let shim = connect(&dir).await.ok();
                match (&shim, read_exit(&dir)) {
                    (Some(_), _) => {
                        tracing::info!(namespace = %nsn, id = %idn, "re-adopted a live shim")
                    }
                    (None, Some(e)) => {
                        tracing::warn!(namespace = %nsn, id = %idn, exit_status = e.exit_status, "shim gone; its container's exit was recorded")
                    }
                    (None, None) => {
                        tracing::warn!(namespace = %nsn, id = %idn, "shim gone without an exit record")
                    }
                }
                if let Some(c) = &shim {
                    self.watch_exit(&nsn, &idn, c.clone());
                }
                self.tasks
                    .lock()
                    .expect("tasks lock")
                    .insert((nsn, idn), Task { dir, shim });
            }
        }
    }

    fn task(&self, ns: &str, id: &str) -> Result<Task, Error> {
        self.tasks
            .lock()
            .expect("tasks lock")
            .get(&(ns.to_owned(), id.to_owned()))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {id:?} in namespace {ns:?}")))
    }

    fn db(&self) -> &Db {
        &self.storage.db
    }

    /// Containers.Create (blocking).
    fn create_container(
        &self,
        ns: &str,
        req: cpb::CreateContainerRequest,
    ) -> Result<Container, Error> {
        let c = req.container.into_option().unwrap_or_default();
        crate::metadata::validate::identifier("container", &c.id).map_err(meta)?;
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
        let (config, chain) = if c.image.is_empty() {
            (None, None)
        } else {
            let image = self.db().images().get(ns, &c.image).map_err(meta)?;
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
                    crate::metadata::chain(&e)
                ))
            })?;
            (Some(resolved.config.clone()), resolved.top_chain_id())
        };
        let spec_bytes = if !c.spec.is_empty() {
            spec::parse(&c.spec)?;
            c.spec.clone()
        } else {
            let o = req.options.into_option().unwrap_or_default();
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
                binds: o
                    .mounts
                    .into_iter()
                    .map(|m| spec::Bind {
                        source: m.source.into(),
                        destination: m.destination,
                        options: m.options,
                    })
                    .collect(),
                memory_limit: (o.memory_limit > 0).then_some(o.memory_limit),
                cpus: (o.cpus != 0.0).then_some(o.cpus),
                pids_limit: (o.pids_limit > 0).then_some(o.pids_limit),
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
            labels: c.labels.into_iter().collect(),
            created_at: std::time::SystemTime::now(),
            updated_at: std::time::SystemTime::now(),
        };
        // The rootfs snapshot, removed again if the record cannot be stored.
        if let Some(chain) = &chain {
            let sn = self.snapshotters.lookup(&snapshotter).ok_or_else(|| {
                Error::InvalidSpec(format!("snapshotter {snapshotter:?} is not loaded"))
            })?;
            let backend = format!("{ns}/{}", c.id);
            let _guard = self.db().resource_guard();
            sn.prepare(
                &backend,
                &crate::unpack::backend_name(ns, chain),
                Default::default(),
            )
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
                meta(e)
            });
        }
        self.db().containers().create(ns, rec).map_err(meta)
    }

    /// Containers.Delete (blocking).
    fn delete_container(&self, ns: &str, id: &str) -> Result<(), Error> {
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
        let (c, snapshot) = self
            .db()
            .containers()
            .delete_with_snapshot(ns, id)
            .map_err(meta)?;
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
        Ok(())
    }

    /// Tasks.Create.
    async fn create_task(
        self: &Arc<Self>,
        ns: &str,
        r: tpb::CreateTaskRequest,
    ) -> Result<tpb::CreateTaskResponse, Error> {
        let id = r.container_id.clone();
        let key = (ns.to_owned(), id.clone());
        if self.tasks.lock().expect("tasks lock").contains_key(&key) {
            return Err(Error::AlreadyExists(format!(
                "task {id:?} in namespace {ns:?}"
            )));
        }
        let c = self.db().containers().get(ns, &id).map_err(meta)?;
        // The executor's cgroup move waits a grace period; start it now (cgroup_gp.rs).
        super::cgroup_gp::prefetch();
        let dir = self.shim_dir(ns, &id);
        let rootfs = dir.join("rootfs");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&rootfs)
            .map_err(|source| Error::Io {
                what: format!("create {}", rootfs.display()),
                source,
            })?;
        let mut mounted = false;
        let result = async {
            if !c.snapshot_key.is_empty() {
                let srec = self
                    .db()
                    .snapshots()
                    .get(ns, &c.snapshotter, &c.snapshot_key)
                    .map_err(meta)?;
                let sn = self.snapshotters.lookup(&c.snapshotter).ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "snapshotter {:?} is not loaded",
                        c.snapshotter
                    ))
                })?;
                let mounts = sn
                    .mounts(&srec.backend_key)
                    .map_err(|source| Error::Snapshot {
                        key: srec.backend_key.clone(),
                        source: Box::new(source),
                    })?;
                berth_api::mount::mount_all(&mounts, &rootfs).map_err(|source| {
                    Error::Snapshot {
                        key: srec.backend_key.clone(),
                        source: Box::new(source.into()),
                    }
                })?;
                mounted = true;
            }
            let spec_bytes = spec::resolve_user(&c.spec, &rootfs)?;
            check_binds(&spec::parse(&spec_bytes)?, &rootfs)?;
            std::fs::write(dir.join("config.json"), &spec_bytes).map_err(|source| Error::Io {
                what: "write config.json".into(),
                source,
            })?;
            let (name, handler) = self
                .runtimes
                .read()
                .expect("runtimes lock")
                .get(&c.runtime)?;
            let binary = match handler {
                super::runtimes::Handler::Builtin => None,
                super::runtimes::Handler::External { binary } => {
                    super::runtimes::check_binary(&name, &binary)?;
                    Some(binary)
                }
            };
            let pid = start_shim(ns, &id, &dir, &r, binary.as_deref()).await?;
            let shim = connect(&dir).await?;
            Ok::<_, Error>((pid, shim))
        }
        .await;
        match result {
            Ok((pid, shim)) => {
                self.tasks.lock().expect("tasks lock").insert(
                    key,
                    Task {
                        dir,
                        shim: Some(shim.clone()),
                    },
                );
                self.watch_exit(ns, &id, shim);
                self.publish(
                    ns,
                    "/tasks/create",
                    serde_json::json!({"container_id": id, "pid": pid}),
                );
                Ok(tpb::CreateTaskResponse {
                    container_id: id,
                    pid,
                    ..Default::default()
                })
            }
            Err(e) => {
                if mounted {
                    let _ = berth_api::mount::unmount_all(&rootfs);
                }
                let _ = std::fs::remove_dir_all(&dir);
                // A create the executor gave up on may have made the cgroups already.
                super::shim::remove_cgroups(ns, &id);
                Err(e)
            }
        }
    }

    /// Tasks.Delete: the shim deletes the container and exits; berthd unmounts the rootfs and
    /// removes the directory.
    async fn delete_task(&self, ns: &str, id: &str) -> Result<tpb::DeleteResponse, Error> {
        let t = self.task(ns, id)?;
        let mut resp = tpb::DeleteResponse {
            container_id: id.to_owned(),
            ..Default::default()
        };
        match &t.shim {
            Some(s) => {
                let d = s
                    .delete(
                        ttrpc::context::with_timeout(30_000_000_000),
                        &spb::DeleteRequest::default(),
                    )
                    .await
                    .map_err(|e| shim_err(id, e))?;
                let p = d.process.into_option().unwrap_or_default();
                resp.pid = p.pid;
                resp.exit_status = p.exit_status;
                resp.exited_at = p.exited_at;
            }
            None => {
                if let Some(e) = read_exit(&t.dir) {
                    resp.pid = e.pid;
                    resp.exit_status = e.exit_status;
                    resp.exited_at = e.exited_at;
                }
            }
        }
        let rootfs = t.dir.join("rootfs");
        if let Err(e) = berth_api::mount::unmount_all(&rootfs) {
            tracing::warn!(container = id, "cannot unmount the rootfs: {e}");
        }
        let _ = std::fs::remove_dir_all(&t.dir);
        super::shim::remove_cgroups(ns, id);
        self.tasks
            .lock()
            .expect("tasks lock")
            .remove(&(ns.to_owned(), id.to_owned()));
        Ok(resp)
    }

    async fn process(&self, ns: &str, id: &str, exec_id: &str) -> Result<tpb::Process, Error> {
        let t = self.task(ns, id)?;
        let mut p = tpb::Process {
            container_id: id.to_owned(),
            exec_id: exec_id.to_owned(),
            status: "unknown".into(),
            ..Default::default()
        };
        match &t.shim {
            Some(s) => match s
                .state(
                    ttrpc::context::with_timeout(5_000_000_000),
                    &spb::StateRequest {
                        exec_id: exec_id.to_owned(),
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(st) => {
                    let sp = st.process.into_option().unwrap_or_default();
                    p.pid = sp.pid;
                    p.status = sp.status;
                    p.exit_status = sp.exit_status;
                    p.exited_at = sp.exited_at;
                }
                Err(ttrpc::Error::RpcStatus(s)) if s.code() == ttrpc::Code::NOT_FOUND => {
                    return Err(Error::NotFound(s.message().to_owned()))
                }
                Err(_) => {
                    if let Some(e) = read_exit(&t.dir).filter(|_| exec_id.is_empty()) {
                        p.pid = e.pid;
                        p.status = "stopped".into();
                        p.exit_status = e.exit_status;
                        p.exited_at = e.exited_at;
                    }
                }
            },
            None => {
                if let Some(e) = read_exit(&t.dir).filter(|_| exec_id.is_empty()) {
                    p.pid = e.pid;
                    p.status = "stopped".into();
                    p.exit_status = e.exit_status;
                    p.exited_at = e.exited_at;
                }
            }
        }
        Ok(p)
    }

    fn shim(&self, ns: &str, id: &str) -> Result<shim_ttrpc::ShimClient, Error> {
        self.task(ns, id)?.shim.ok_or_else(|| {
            Error::FailedPrecondition(format!("the shim of task {id:?} is gone; delete the task"))
        })
    }
}

fn shim_err(id: &str, e: ttrpc::Error) -> Error {
    match e {
        ttrpc::Error::RpcStatus(s) => {
            let msg = s.message().to_owned();
            match s.code() {
                ttrpc::Code::NOT_FOUND => Error::NotFound(msg),
                ttrpc::Code::ALREADY_EXISTS => Error::AlreadyExists(msg),
                ttrpc::Code::FAILED_PRECONDITION => Error::FailedPrecondition(msg),
                ttrpc::Code::INVALID_ARGUMENT => Error::InvalidSpec(msg),
                _ => Error::Shim {
                    id: id.to_owned(),
                    reason: msg,
                },
            }
        }
        other => Error::Shim {
            id: id.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Bind mounts whose source and existing destination differ in kind fail here with a clear
/// message (the executor's own error would be "not a directory" from deep inside).
fn check_binds(spec: &oci_spec::runtime::Spec, rootfs: &Path) -> Result<(), Error> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let Some(mounts) = spec.mounts() else {
        return Ok(());
    };
    let root = std::fs::File::open(rootfs).map_err(|source| Error::Io {
        what: format!("open {}", rootfs.display()),
        source,
    })?;
    for m in mounts {
        if m.typ().as_deref() != Some("bind") {
            continue;
        }
        let Some(src) = m.source() else { continue };
        let src_meta = std::fs::metadata(src).map_err(|source| Error::Io {
            what: format!("stat bind mount source {}", src.display()),
            source,
        })?;
        let dst = m.destination();
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let rel = dst.strip_prefix("/").unwrap_or(dst);
        let Ok(fd) = openat2(std::os::fd::AsRawFd::as_raw_fd(&root), rel, how) else {
            continue; // created by the executor with the source's kind
        };
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        let f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let Ok(dst_meta) = f.metadata() else { continue };
        let kind = |d: bool| if d { "directory" } else { "file" };
        if src_meta.is_dir() != dst_meta.is_dir() {
            return Err(Error::InvalidSpec(format!(
                "cannot mount {} {} onto {} {}",
                kind(src_meta.is_dir()),
                src.display(),
                kind(dst_meta.is_dir()),
                dst.display()
            )));
        }
    }
    Ok(())
}

async fn connect(dir: &Path) -> Result<shim_ttrpc::ShimClient, Error> {
    let sock = dir.join("shim.sock");
    let addr = format!("unix://{}", sock.display());
    // A stale socket file of a dead shim refuses the connection at once.
    std::os::unix::net::UnixStream::connect(&sock).map_err(|source| Error::Io {
        what: format!("connect to {}", sock.display()),
        source,
    })?;
    let c = ttrpc::r#async::Client::connect(&addr)
        .await
        .map_err(|e| Error::Shim {
            id: dir.display().to_string(),
            reason: format!("connect: {e}"),
        })?;
    Ok(shim_ttrpc::ShimClient::new(c))
}

/// Starts `berth-shim serve` (setsid, then it forks again) and waits for its report line.
async fn start_shim(
    ns: &str,
    id: &str,
    dir: &Path,
    r: &tpb::CreateTaskRequest,
    runtime_binary: Option<&Path>,
) -> Result<u32, Error> {
    let mut cmd = super::shim::sealed_command(dir)?;
    cmd.arg("serve")
        .args(["--namespace", ns, "--id", id])
        .arg("--dir")
        .arg(dir)
        .args([
            "--stdin", &r.stdin, "--stdout", &r.stdout, "--stderr", &r.stderr,
        ]);
    if let Some(b) = runtime_binary {
        cmd.arg("--runtime-binary").arg(b);
    }
    cmd.current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let id2 = id.to_owned();
    let line = tokio::task::spawn_blocking(move || -> Result<String, Error> {
        let mut child = cmd.spawn().map_err(|source| Error::Io {
            what: "start the shim".into(),
            source,
        })?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut line);
        let _ = child.wait();
        Ok(line)
    });
    let line = tokio::time::timeout(SHIM_START_TIMEOUT, line)
        .await
        .map_err(|_| Error::Shim {
            id: id2.clone(),
            reason: "no report within 30 s".into(),
        })?
        .map_err(|e| Error::Shim {
            id: id2.clone(),
            reason: e.to_string(),
        })??;
    let line = line.lines().next().unwrap_or("").trim().to_owned();
    if let Some(pid) = line.strip_prefix("ok ") {
        return pid.parse().map_err(|_| Error::Shim {
            id: id2,
            reason: format!("bad report {line:?}"),
        });
    }
    let reason = line.strip_prefix("error: ").unwrap_or(&line);
    Err(Error::Shim {
        id: id2,
        reason: if reason.is_empty() {
            "exited without a report (see its shim.log)".to_owned()
        } else {
            reason.to_owned()
        },
    })
}

fn container_to_pb(c: &Container) -> cpb::Container {
    cpb::Container {
        id: c.id.clone(),
        labels: c.labels.clone().into_iter().collect(),
        image: c.image.clone(),
        runtime: c.runtime.clone(),
        spec: c.spec.clone(),
        snapshotter: c.snapshotter.clone(),
        snapshot_key: c.snapshot_key.clone(),
        created_at: nanos(c.created_at),
        updated_at: nanos(c.updated_at),
        ..Default::default()
    }
}

/// The Containers ttrpc service.
pub struct ContainersService(pub Arc<Tasks>);
/// The Tasks ttrpc service.
pub struct TasksService(pub Arc<Tasks>);

#[async_trait]
impl containers_ttrpc::Containers for ContainersService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        r: cpb::CreateContainerRequest,
    ) -> ttrpc::Result<cpb::CreateContainerResponse> {
        let ns = namespace(ctx)?;
        let t = self.0.clone();
        let ns2 = ns.clone();
        let c = tokio::task::spawn_blocking(move || t.create_container(&ns2, r))
            .await
            .map_err(|e| status(ttrpc::Code::INTERNAL, e.to_string()))?
            .map_err(tt)?;
        self.0.publish(
            &ns,
            "/containers/create",
            serde_json::json!({"id": c.id, "image": c.image, "runtime": c.runtime}),
        );
        Ok(cpb::CreateContainerResponse {
            container: Some(container_to_pb(&c)).into(),
            ..Default::default()
        })
    }

    async fn get(
        &self,
        ctx: &TtrpcContext,
        r: cpb::GetContainerRequest,
    ) -> ttrpc::Result<cpb::GetContainerResponse> {
        let ns = namespace(ctx)?;
        let c = self
            .0
            .db()
            .containers()
            .get(&ns, &r.id)
            .map_err(|e| e.to_ttrpc())?;
        Ok(cpb::GetContainerResponse {
            container: Some(container_to_pb(&c)).into(),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _: cpb::ListContainersRequest,
    ) -> ttrpc::Result<cpb::ListContainersResponse> {
        let ns = namespace(ctx)?;
        let cs = self
            .0
            .db()
            .containers()
            .list(&ns)
            .map_err(|e| e.to_ttrpc())?;
        Ok(cpb::ListContainersResponse {
            containers: cs.iter().map(container_to_pb).collect(),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        ctx: &TtrpcContext,
        r: cpb::UpdateContainerRequest,
    ) -> ttrpc::Result<cpb::UpdateContainerResponse> {
        let ns = namespace(ctx)?;
        let c = r.container.into_option().unwrap_or_default();
        if r.update_mask.iter().any(|p| p == "spec")
            || (r.update_mask.is_empty() && !c.spec.is_empty())
        {
            spec::parse(&c.spec).map_err(tt)?;
        }
        let cur = self
            .0
            .db()
            .containers()
            .get(&ns, &c.id)
            .map_err(|e| e.to_ttrpc())?;
        let rec = Container {
            id: c.id.clone(),
            image: c.image,
            snapshotter: cur.snapshotter,
            snapshot_key: cur.snapshot_key,
            runtime: c.runtime,
            spec: c.spec,
            labels: c.labels.into_iter().collect(),
            created_at: cur.created_at,
            updated_at: cur.updated_at,
        };
        let mask: Vec<String> = if r.update_mask.is_empty() {
            vec![
                "labels".into(),
                "image".into(),
                "runtime".into(),
                "spec".into(),
            ]
        } else {
            r.update_mask.clone()
        };
        if mask
            .iter()
            .any(|m| m == "snapshotter" || m == "snapshot_key")
        {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                "a container's snapshot cannot be changed",
            ));
        }
        let out = self
            .0
            .db()
            .containers()
            .update(&ns, rec, &mask)
            .map_err(|e| e.to_ttrpc())?;
        Ok(cpb::UpdateContainerResponse {
            container: Some(container_to_pb(&out)).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        r: cpb::DeleteContainerRequest,
    ) -> ttrpc::Result<cpb::Empty> {
        let ns = namespace(ctx)?;
        let t = self.0.clone();
        let (ns2, id) = (ns.clone(), r.id.clone());
        tokio::task::spawn_blocking(move || t.delete_container(&ns2, &r.id))
            .await
            .map_err(|e| status(ttrpc::Code::INTERNAL, e.to_string()))?
            .map_err(tt)?;
        self.0
            .publish(&ns, "/containers/delete", serde_json::json!({"id": id}));
        Ok(cpb::Empty::default())
    }
}

impl TasksService {
    /// Pause (`pause`) or resume a task through its shim, then publish the event.
    async fn freeze(
        &self,
        ctx: &TtrpcContext,
        container_id: &str,
        pause: bool,
    ) -> ttrpc::Result<tpb::Empty> {
        let ns = namespace(ctx)?;
        let s = self.0.shim(&ns, container_id).map_err(tt)?;
        let c = ttrpc::context::with_timeout(10_000_000_000);
        let done = if pause {
            s.pause(c, &spb::Empty::default()).await
        } else {
            s.resume(c, &spb::Empty::default()).await
        };
        done.map_err(|e| tt(shim_err(container_id, e)))?;
        let topic = if pause {
            "/tasks/paused"
        } else {
            "/tasks/resumed"
        };
        self.0.publish(
            &ns,
            topic,
            serde_json::json!({"container_id": container_id}),
        );
        Ok(tpb::Empty::default())
    }
}

#[async_trait]
impl tasks_ttrpc::Tasks for TasksService {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        r: tpb::CreateTaskRequest,
    ) -> ttrpc::Result<tpb::CreateTaskResponse> {
        let ns = namespace(ctx)?;
        self.0.create_task(&ns, r).await.map_err(tt)
    }

    async fn start(
        &self,
        ctx: &TtrpcContext,
        r: tpb::StartRequest,
    ) -> ttrpc::Result<tpb::StartResponse> {
        let ns = namespace(ctx)?;
        let s = self.0.shim(&ns, &r.container_id).map_err(tt)?;
        let out = s
            .start(
                ttrpc::context::with_timeout(30_000_000_000),
                &spb::StartRequest::default(),
            )
            .await
            .map_err(|e| tt(shim_err(&r.container_id, e)))?;
        self.0.publish(
            &ns,
            "/tasks/start",
            serde_json::json!({"container_id": r.container_id, "pid": out.pid}),
        );
        Ok(tpb::StartResponse {
            pid: out.pid,
            ..Default::default()
        })
    }

    async fn kill(&self, ctx: &TtrpcContext, r: tpb::KillRequest) -> ttrpc::Result<tpb::Empty> {
        let ns = namespace(ctx)?;
        let s = self.0.shim(&ns, &r.container_id).map_err(tt)?;
        s.kill(
            ttrpc::context::with_timeout(10_000_000_000),
            &spb::KillRequest {
                exec_id: r.exec_id,
                signal: r.signal,
                all: r.all,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| tt(shim_err(&r.container_id, e)))?;
        Ok(tpb::Empty::default())
    }

    async fn wait(
        &self,
        ctx: &TtrpcContext,
        r: tpb::WaitRequest,
    ) -> ttrpc::Result<tpb::WaitResponse> {
        let ns = namespace(ctx)?;
        let t = self.0.task(&ns, &r.container_id).map_err(tt)?;
        let Some(s) = t.shim else {
            let e = read_exit(&t.dir).ok_or_else(|| {
                status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    "the shim is gone and recorded no exit",
                )
            })?;
            return Ok(tpb::WaitResponse {
                exit_status: e.exit_status,
                exited_at: e.exited_at,
                ..Default::default()
            });
        };
        let out = s
            .wait(
                ttrpc::context::Context::default(),
                &spb::WaitRequest {
                    exec_id: r.exec_id,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| tt(shim_err(&r.container_id, e)))?;
        let p = out.process.into_option().unwrap_or_default();
        Ok(tpb::WaitResponse {
            exit_status: p.exit_status,
            exited_at: p.exited_at,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        r: tpb::DeleteTaskRequest,
    ) -> ttrpc::Result<tpb::DeleteResponse> {
        let ns = namespace(ctx)?;
        let d = self.0.delete_task(&ns, &r.container_id).await.map_err(tt)?;
        self.0.publish(
            &ns,
            "/tasks/delete",
            serde_json::json!({"container_id": d.container_id, "pid": d.pid,
                "exit_status": d.exit_status}),
        );
        Ok(d)
    }

    async fn exec(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ExecProcessRequest,
    ) -> ttrpc::Result<tpb::ExecProcessResponse> {
        let ns = namespace(ctx)?;
        let s = self.0.shim(&ns, &r.container_id).map_err(tt)?;
        let out = s
            .exec(
                ttrpc::context::with_timeout(60_000_000_000),
                &spb::ExecRequest {
                    exec_id: r.exec_id,
                    args: r.args,
                    env: r.env,
                    cwd: r.cwd,
                    stdin: r.stdin,
                    stdout: r.stdout,
                    stderr: r.stderr,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| tt(shim_err(&r.container_id, e)))?;
        Ok(tpb::ExecProcessResponse {
            pid: out.pid,
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ListPidsRequest,
    ) -> ttrpc::Result<tpb::ListPidsResponse> {
        let ns = namespace(ctx)?;
        let s = self.0.shim(&ns, &r.container_id).map_err(tt)?;
        let out = s
            .pids(
                ttrpc::context::with_timeout(10_000_000_000),
                &spb::PidsRequest::default(),
            )
            .await
            .map_err(|e| tt(shim_err(&r.container_id, e)))?;
        Ok(tpb::ListPidsResponse {
            pids: out.pids,
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _: tpb::ListTasksRequest,
    ) -> ttrpc::Result<tpb::ListTasksResponse> {
        let ns = namespace(ctx)?;
        let mut ids: Vec<String> = self
            .0
            .tasks
            .lock()
            .expect("tasks lock")
            .keys()
            .filter(|(n, _)| *n == ns)
            .map(|(_, id)| id.clone())
            .collect();
        ids.sort();
        let mut tasks = Vec::new();
        for id in ids {
            if let Ok(p) = self.0.process(&ns, &id, "").await {
                tasks.push(p);
            }
        }
        Ok(tpb::ListTasksResponse {
            tasks,
            ..Default::default()
        })
    }

    async fn pause(
        &self,
        ctx: &TtrpcContext,
        r: tpb::PauseTaskRequest,
    ) -> ttrpc::Result<tpb::Empty> {
        self.freeze(ctx, &r.container_id, true).await
    }

    async fn resume(
        &self,
        ctx: &TtrpcContext,
        r: tpb::ResumeTaskRequest,
    ) -> ttrpc::Result<tpb::Empty> {
        self.freeze(ctx, &r.container_id, false).await
    }

    async fn metrics(
        &self,
        ctx: &TtrpcContext,
        r: tpb::MetricsRequest,
    ) -> ttrpc::Result<tpb::MetricsResponse> {
        let ns = namespace(ctx)?;
        self.0.task(&ns, &r.container_id).map_err(tt)?;
        super::metrics::read(Path::new("/sys/fs/cgroup"), &ns, &r.container_id).map_err(tt)
    }

    async fn logs(
        &self,
        ctx: &TtrpcContext,
        r: tpb::LogsRequest,
        sink: ttrpc::r#async::ServerStreamSender<tpb::LogChunk>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let t = self.0.task(&ns, &r.container_id).map_err(tt)?;
        let tail = usize::try_from(r.tail).ok();
        let (data, current) = super::logs::stored(&t.dir, tail).map_err(tt)?;
        // Chunks well under ttrpc's 4 MiB message limit.
        for chunk in data.chunks(256 * 1024) {
            sink.send(&tpb::LogChunk {
                data: chunk.to_vec(),
                ..Default::default()
            })
            .await?;
        }
        if !r.follow {
            return Ok(());
        }
        let sink = &sink;
        super::logs::follow(&t.dir, current, |data| async move {
            sink.send(&tpb::LogChunk {
                data,
                ..Default::default()
            })
            .await
            .is_ok()
        })
        .await
        .map_err(tt)
    }

    async fn get(&self, ctx: &TtrpcContext, r: tpb::GetRequest) -> ttrpc::Result<tpb::GetResponse> {
        let ns = namespace(ctx)?;
        let p = self
            .0
            .process(&ns, &r.container_id, &r.exec_id)
            .await
            .map_err(tt)?;
        Ok(tpb::GetResponse {
            process: Some(p).into(),
            ..Default::default()
        })
    }
}

/// The Events ttrpc service: every subscriber gets the events published after it subscribed
/// (a subscriber too slow for 256 queued events misses the oldest, and is told so in the log).
pub struct EventsService(pub Arc<Tasks>);

#[async_trait]
impl events_ttrpc::Events for EventsService {
    async fn subscribe(
        &self,
        _: &TtrpcContext,
        r: epb::SubscribeRequest,
        sink: ttrpc::r#async::ServerStreamSender<epb::Envelope>,
    ) -> ttrpc::Result<()> {
        let mut rx = self.0.events.subscribe();
        loop {
            match rx.recv().await {
                Ok(e) => {
                    if r.topics.is_empty()
                        || r.topics.iter().any(|t| e.topic.starts_with(t.as_str()))
                    {
                        sink.send(&e).await?;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "an events subscriber fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
}

/// berthd-internal entry points for boot containers ([`super::boot`]): the same paths as the
/// ttrpc handlers, events included, without a ttrpc context.
impl Tasks {
    /// Publishes an event (e.g. `/boot/restart`).
    pub(super) fn internal_publish(&self, ns: &str, topic: &str, event: serde_json::Value) {
        self.publish(ns, topic, event);
    }

    /// The container record, if any.
    pub(super) fn internal_container(&self, ns: &str, id: &str) -> Option<Container> {
        self.db().containers().get(ns, id).ok()
    }

    /// Containers.Create (blocking), publishing `/containers/create`.
    pub(super) fn internal_create_container(
        &self,
        ns: &str,
        req: cpb::CreateContainerRequest,
    ) -> Result<Container, Error> {
        let c = self.create_container(ns, req)?;
        self.publish(
            ns,
            "/containers/create",
            serde_json::json!({"id": c.id, "image": c.image, "runtime": c.runtime}),
        );
        Ok(c)
    }

    /// Containers.Delete (blocking), publishing `/containers/delete`.
    pub(super) fn internal_delete_container(&self, ns: &str, id: &str) -> Result<(), Error> {
        self.delete_container(ns, id)?;
        self.publish(ns, "/containers/delete", serde_json::json!({"id": id}));
        Ok(())
    }

    /// Tasks.Create with no stdio (the output goes to the shim's log) and Tasks.Start;
    /// returns the init's pid.
    pub(super) async fn internal_create_and_start(
        self: &Arc<Self>,
        ns: &str,
        id: &str,
    ) -> Result<u32, Error> {
        self.create_task(
            ns,
            tpb::CreateTaskRequest {
                container_id: id.to_owned(),
                ..Default::default()
            },
        )
        .await?;
        self.internal_start(ns, id).await
    }

    /// Tasks.Start of a created task, publishing `/tasks/start`.
    pub(super) async fn internal_start(&self, ns: &str, id: &str) -> Result<u32, Error> {
        let out = self
            .shim(ns, id)?
            .start(
                ttrpc::context::with_timeout(30_000_000_000),
                &spb::StartRequest::default(),
            )
            .await
            .map_err(|e| shim_err(id, e))?;
        self.publish(
            ns,
            "/tasks/start",
            serde_json::json!({"container_id": id, "pid": out.pid}),
        );
        Ok(out.pid)
    }

    /// The task's init process (status "created", "running", "paused", "stopped" or
    /// "unknown"); `None` when there is no task.
    pub(super) async fn internal_process(&self, ns: &str, id: &str) -> Option<tpb::Process> {
        self.task(ns, id).ok()?;
        self.process(ns, id, "").await.ok()
    }

    /// Waits for the task's init to exit; its exit status (`None`: the shim went away
    /// without recording one).
    pub(super) async fn internal_wait(&self, ns: &str, id: &str) -> Result<Option<u32>, Error> {
        let t = self.task(ns, id)?;
        if let Some(s) = &t.shim {
            if let Ok(w) = s
                .wait(
                    ttrpc::context::Context::default(),
                    &spb::WaitRequest::default(),
                )
                .await
            {
                return Ok(Some(
                    w.process.into_option().unwrap_or_default().exit_status,
                ));
            }
        }
        Ok(read_exit(&t.dir).map(|e| e.exit_status))
    }

    /// The task's directory (`<state>/shims/<ns>/<id>`: its `log` is the container's output).
    pub(super) fn internal_task_dir(&self, ns: &str, id: &str) -> PathBuf {
        self.shim_dir(ns, id)
    }

    /// Tasks.Delete, publishing `/tasks/delete`.
    pub(super) async fn internal_delete_task(&self, ns: &str, id: &str) -> Result<(), Error> {
        let d = self.delete_task(ns, id).await?;
        self.publish(
            ns,
            "/tasks/delete",
            serde_json::json!({"container_id": d.container_id, "pid": d.pid,
                "exit_status": d.exit_status}),
        );
        Ok(())
    }
}
