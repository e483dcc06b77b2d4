//! A task's life through its shim: create (mount the rootfs, write the bundle, start the
//! shim), start, kill, pause and resume, state, delete. Each operation that changes the task
//! publishes its event (`/tasks/create`, `/tasks/start`, `/tasks/paused`, `/tasks/resumed`,
//! `/tasks/delete`).
//!
//! Task creation mounts the snapshot on `<state>/shims/<ns>/<id>/rootfs`, resolves the user in
//! that rootfs, checks bind mount kinds, writes `config.json`, starts the shim and connects to
//! its socket. Delete asks the shim to delete the container and exit; berthd then unmounts
//! the rootfs and removes the directory.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::proto::shim as spb;

use super::launch::{check_binds, connect, shim_err, start_shim};
use super::manager::Task;
use super::shim::exits::read_exit;
use super::{spec, Error, ExitRecord, ProcessState, Status, Tasks};

/// A process's stdio: its output always goes to the container's log and to the clients
/// attached over the API (`Tasks.Attach`); no client ever names a path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskIo {
    /// Keep stdin open for attached clients; false: stdin is /dev/null.
    pub stdin: bool,
    /// A terminal (pty) instead of pipes: one output stream.
    pub terminal: bool,
}

/// What a task is created with besides its stdio.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskOptions {
    /// Where the shim also writes the init's output in kubelet's CRI log format (absolute;
    /// see [`super::shim::cri_log`]); `None`: not at all.
    pub log_path: Option<PathBuf>,
}

fn ctx(secs: i64) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(secs * 1_000_000_000)
}

/// `spec` with a terminal for its process (`process.terminal`, which the executor answers
/// with a pty and the console socket), and `TERM=xterm` unless the environment sets `TERM`
/// (docker's `-t` does the same; a shell needs it to edit lines).
fn with_terminal(spec: &[u8]) -> Result<Vec<u8>, Error> {
    let mut v: serde_json::Value = serde_json::from_slice(spec)
        .map_err(|e| Error::InvalidSpec(format!("OCI runtime spec: {e}")))?;
    let Some(p) = v.get_mut("process").and_then(|p| p.as_object_mut()) else {
        return Err(Error::InvalidSpec("a terminal needs a process".into()));
    };
    p.insert("terminal".into(), serde_json::Value::Bool(true));
    let env = p
        .entry("env")
        .or_insert_with(|| serde_json::json!([]))
        .as_array_mut()
        .ok_or_else(|| Error::InvalidSpec("process.env is not a list".into()))?;
    if !env
        .iter()
        .any(|e| e.as_str().is_some_and(|s| s.starts_with("TERM=")))
    {
        env.push("TERM=xterm".into());
    }
    serde_json::to_vec(&v).map_err(|e| Error::InvalidSpec(e.to_string()))
}

impl Tasks {
    /// Creates the task of container `id` in `ns` with stdio `io`; returns its init's pid.
    pub async fn create_task(
        self: &Arc<Self>,
        ns: &str,
        id: &str,
        io: &TaskIo,
    ) -> Result<u32, Error> {
        self.create_task_with(ns, id, io, &TaskOptions::default())
            .await
    }

    /// [`Tasks::create_task`] with `opts` (a CRI log path).
    pub async fn create_task_with(
        self: &Arc<Self>,
        ns: &str,
        id: &str,
        io: &TaskIo,
        opts: &TaskOptions,
    ) -> Result<u32, Error> {
        if let Some(p) = &opts.log_path {
            if !p.is_absolute() {
                return Err(Error::InvalidArgument(format!(
                    "log path {}: must be absolute",
                    p.display()
                )));
            }
        }
        let key = (ns.to_owned(), id.to_owned());
        if self.tasks.lock().expect("tasks lock").contains_key(&key) {
            return Err(Error::AlreadyExists(format!(
                "task {id:?} in namespace {ns:?}"
            )));
        }
        let c = self.db().containers().get(ns, id)?;
        // The executor's cgroup move waits a grace period; start it now (cgroup_gp.rs).
        super::cgroup_gp::prefetch();
        let dir = self.task_dir(ns, id);
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
                    .get(ns, &c.snapshotter, &c.snapshot_key)?;
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
            let mut spec_bytes = spec::resolve_user(&c.spec, &rootfs)?;
            if io.terminal {
                spec_bytes = with_terminal(&spec_bytes)?;
            }
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
            let sock = self.shim_socket(ns, id);
            let sock_dir = super::shim_socket::dir(&self.state_dir);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&sock_dir)
                .map_err(|source| Error::Io {
                    what: format!("create {}", sock_dir.display()),
                    source,
                })?;
            let pid = start_shim(
                ns,
                id,
                &dir,
                &sock,
                io,
                opts.log_path.as_deref(),
                binary.as_deref(),
            )
            .await?;
            let shim = connect(&sock).await?;
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
                self.watch_exit(ns, id, shim);
                self.publish(
                    ns,
                    "/tasks/create",
                    serde_json::json!({"container_id": id, "pid": pid}),
                );
                Ok(pid)
            }
            Err(e) => {
                // A shim that failed after the executor created the container (its socket, its
                // report, a timeout) leaves the container's init waiting for a start that
                // never comes, in its cgroups: kill whatever is there before removing them.
                // The shim ends its own child first when it can (berth_daemon::shim).
                let cgroup = super::cgroups::of_spec(&c.spec, ns, id);
                let _ = tokio::task::spawn_blocking({
                    let cgroup = cgroup.clone();
                    move || super::cgroups::kill_all(&cgroup)
                })
                .await;
                if mounted {
                    let _ = berth_api::mount::unmount_all(&rootfs);
                }
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(self.shim_socket(ns, id));
                super::shim::executor::remove_cgroups(ns, id, &cgroup);
                Err(e)
            }
        }
    }

    /// Starts the created task `id`; returns its init's pid.
    pub async fn start_task(&self, ns: &str, id: &str) -> Result<u32, Error> {
        let out = self
            .shim(ns, id)?
            .start(ctx(30), &spb::StartRequest::default())
            .await
            .map_err(|e| shim_err(id, e))?;
        self.publish(
            ns,
            "/tasks/start",
            serde_json::json!({"container_id": id, "pid": out.pid}),
        );
        Ok(out.pid)
    }

    /// Starts exec `exec_id` of task `id` (created by [`Tasks::exec`]); returns its pid and
    /// publishes `/tasks/exec-started` (containerd's topic).
    pub async fn start_exec(&self, ns: &str, id: &str, exec_id: &str) -> Result<u32, Error> {
        let out = self
            .shim(ns, id)?
            .start(
                ctx(70),
                &spb::StartRequest {
                    exec_id: exec_id.to_owned(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| shim_err(id, e))?;
        self.publish(
            ns,
            "/tasks/exec-started",
            serde_json::json!({"container_id": id, "exec_id": exec_id, "pid": out.pid}),
        );
        Ok(out.pid)
    }

    /// Sends `signal` to process `exec_id` (`""`: the init) of task `id`, or to every
    /// process of the container (`all`).
    pub async fn kill(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), Error> {
        self.shim(ns, id)?
            .kill(
                ctx(10),
                &spb::KillRequest {
                    exec_id: exec_id.to_owned(),
                    signal,
                    all,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| shim_err(id, e))?;
        Ok(())
    }

    /// Pauses (`pause`) or resumes task `id` through its shim, then publishes the event.
    pub async fn freeze(&self, ns: &str, id: &str, pause: bool) -> Result<(), Error> {
        let s = self.shim(ns, id)?;
        let done = if pause {
            s.pause(ctx(10), &spb::Empty::default()).await
        } else {
            s.resume(ctx(10), &spb::Empty::default()).await
        };
        done.map_err(|e| shim_err(id, e))?;
        let topic = if pause {
            "/tasks/paused"
        } else {
            "/tasks/resumed"
        };
        self.publish(ns, topic, serde_json::json!({"container_id": id}));
        Ok(())
    }

    /// The pids in task `id`'s container.
    pub async fn pids(&self, ns: &str, id: &str) -> Result<Vec<u32>, Error> {
        let out = self
            .shim(ns, id)?
            .pids(ctx(10), &spb::PidsRequest::default())
            .await
            .map_err(|e| shim_err(id, e))?;
        Ok(out.pids)
    }

    /// Deletes task `id`: the shim deletes the container and exits; berthd unmounts the
    /// rootfs and removes the directory. Returns the init's exit (zeros when none is known)
    /// and publishes `/tasks/delete`.
    pub async fn delete_task(&self, ns: &str, id: &str) -> Result<ExitRecord, Error> {
        let t = self.task(ns, id)?;
        let mut exit = ExitRecord::default();
        match &t.shim {
            Some(s) => {
                let d = s
                    .delete(ctx(30), &spb::DeleteRequest::default())
                    .await
                    .map_err(|e| shim_err(id, e))?;
                let p = d.process.into_option().unwrap_or_default();
                exit = ExitRecord {
                    pid: p.pid,
                    exit_status: p.exit_status,
                    exited_at: p.exited_at,
                    oom_kills: u64::from(p.oom_killed),
                };
            }
            None => {
                if let Some(e) = read_exit(&t.dir) {
                    exit = e;
                }
            }
        }
        if t.shim.is_none() {
            // A dead shim cannot remove its socket file; a live one does after answering.
            let _ = std::fs::remove_file(self.shim_socket(ns, id));
        }
        let cgroup = super::cgroups::of_bundle(&t.dir, ns, id);
        let rootfs = t.dir.join("rootfs");
        if let Err(e) = berth_api::mount::unmount_all(&rootfs) {
            tracing::warn!(container = id, "cannot unmount the rootfs: {e}");
        }
        let _ = std::fs::remove_dir_all(&t.dir);
        super::shim::executor::remove_cgroups(ns, id, &cgroup);
        self.tasks
            .lock()
            .expect("tasks lock")
            .remove(&(ns.to_owned(), id.to_owned()));
        self.publish(
            ns,
            "/tasks/delete",
            serde_json::json!({"container_id": id, "pid": exit.pid,
                "exit_status": exit.exit_status}),
        );
        Ok(exit)
    }

    /// Opens task `id`'s CRI log again (kubelet renamed it to rotate it).
    pub async fn reopen_log(&self, ns: &str, id: &str) -> Result<(), Error> {
        self.shim(ns, id)?
            .reopen_log(ctx(10), &spb::Empty::default())
            .await
            .map_err(|e| shim_err(id, e))?;
        Ok(())
    }

    /// The state of process `exec_id` (`""`: the init) of task `id`. A shim that does not
    /// answer leaves the status unknown — or, for the init, the recorded exit.
    pub async fn process(&self, ns: &str, id: &str, exec_id: &str) -> Result<ProcessState, Error> {
        let t = self.task(ns, id)?;
        let recorded = |t: &Task| {
            read_exit(&t.dir)
                .filter(|_| exec_id.is_empty())
                .map(|e| ProcessState::exited(&e))
        };
        let Some(s) = &t.shim else {
            return Ok(recorded(&t).unwrap_or_else(ProcessState::unknown));
        };
        let req = spb::StateRequest {
            exec_id: exec_id.to_owned(),
            ..Default::default()
        };
        match s.state(ctx(5), &req).await {
            Ok(st) => {
                let sp = st.process.into_option().unwrap_or_default();
                Ok(ProcessState {
                    pid: sp.pid,
                    status: Status::parse(&sp.status),
                    exit_status: sp.exit_status,
                    exited_at: sp.exited_at,
                    oom_killed: sp.oom_killed,
                })
            }
            Err(ttrpc::Error::RpcStatus(s)) if s.code() == ttrpc::Code::NOT_FOUND => {
                Err(Error::NotFound(s.message().to_owned()))
            }
            Err(_) => Ok(recorded(&t).unwrap_or_else(ProcessState::unknown)),
        }
    }

    /// The init processes of `ns`'s tasks, by container id (tasks whose state cannot be read
    /// are left out).
    pub async fn processes(&self, ns: &str) -> Vec<(String, ProcessState)> {
        let mut out = Vec::new();
        for id in self.ids(ns) {
            if let Ok(p) = self.process(ns, &id, "").await {
                out.push((id, p));
            }
        }
        out
    }

    /// The cgroup statistics of task `id`.
    pub fn metrics(&self, ns: &str, id: &str) -> Result<super::metrics::Metrics, Error> {
        let t = self.task(ns, id)?;
        let cgroup = super::cgroups::of_bundle(&t.dir, ns, id);
        super::metrics::read(Path::new("/sys/fs/cgroup"), id, &cgroup)
    }

    /// The directory of task `id` holding its output (`log`, `log.1`), for
    /// [`super::logs::stored`] and [`super::logs::follow`].
    pub fn log_dir(&self, ns: &str, id: &str) -> Result<PathBuf, Error> {
        Ok(self.task(ns, id)?.dir)
    }
}
