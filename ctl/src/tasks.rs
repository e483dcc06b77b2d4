//! berthctl's `run`, `containers` and `tasks` verbs.
//!
//! `run` creates the container (berthd builds the spec from the image), creates FIFOs in a
//! private temporary directory for stdin, stdout and stderr, creates and starts the task,
//! forwards SIGINT, SIGTERM and SIGHUP to it, waits, and exits with the container's status
//! (128 + signal for a signalled one). With `--rm` it deletes the task and the container
//! afterwards; with `-d` it returns after the start (output goes to the container's log).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};

use berth_api::proto::{
    containers as cpb, containers_ttrpc, events as epb, events_ttrpc, tasks as tpb, tasks_ttrpc,
};
use berth_api::client::normalize_address;
use crate::table;

/// `berthctl run`.
#[derive(Debug, ClapArgs)]
pub struct RunArgs {
    /// Delete the task and the container once it exits.
    #[arg(long)]
    rm: bool,
    /// Start it and return (no stdio attached; output goes to the container's log).
    #[arg(long, short = 'd')]
    detach: bool,
    /// Container id (default: generated).
    #[arg(long)]
    name: Option<String>,
    /// Environment entry KEY=VALUE (repeatable).
    #[arg(long, short = 'e')]
    env: Vec<String>,
    /// Bind mount: type=bind,src=/host/path,dst=/container/path[,options=ro:rbind].
    #[arg(long)]
    mount: Vec<String>,
    /// Network: none (own namespace, no interfaces) or host.
    #[arg(long, default_value = "none")]
    net: String,
    /// Memory limit, bytes or with a K, M, G suffix.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit in CPUs (e.g. 0.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// Largest number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// user[:group] or uid[:gid], resolved in the container's /etc/passwd and /etc/group.
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Working directory in the container (default: the image's, else /).
    #[arg(long, short = 'w')]
    cwd: Option<String>,
    /// Runtime handler: "berth" (built-in) or one configured in berthd, e.g. "runc"
    /// (default: berthd's default_runtime).
    #[arg(long, default_value = "")]
    runtime: String,
    /// Snapshotter (default: berthd's default).
    #[arg(long, default_value = "")]
    snapshotter: String,
    /// Image name.
    image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `berthctl containers`.
#[derive(Debug, Subcommand)]
pub enum ContainersCommand {
    /// List containers.
    #[command(alias = "list")]
    Ls {
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show a container (JSON, spec included).
    Info { id: String },
    /// Delete containers (their task must be deleted first).
    #[command(alias = "delete", alias = "remove")]
    Rm { ids: Vec<String> },
}

/// `berthctl tasks`.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks.
    #[command(alias = "list")]
    Ls,
    /// Signal a task (default SIGTERM).
    Kill {
        #[arg(long, short = 's', default_value = "SIGTERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(long)]
        all: bool,
        id: String,
    },
    /// Run an extra process in a running task; exits with its status.
    Exec {
        /// Exec id (default: generated).
        #[arg(long)]
        exec_id: Option<String>,
        #[arg(long, default_value = "")]
        cwd: String,
        #[arg(long, short = 'e')]
        env: Vec<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Pids of a task's processes.
    Ps { id: String },
    /// Freeze every process of a task.
    Pause { id: String },
    /// Thaw a paused task.
    Resume { id: String },
    /// cgroup statistics of a task: memory, CPU, pids, io.
    Metrics {
        /// table or json.
        #[arg(long, default_value = "table")]
        format: String,
        id: String,
    },
    /// A task's output (stdout and stderr interleaved), from its log files.
    Logs {
        /// Keep printing new output until the task exits.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Only the last N lines (no `-n`: that is the namespace).
        #[arg(long)]
        tail: Option<u64>,
        id: String,
    },
    /// Delete a stopped task.
    #[command(alias = "delete")]
    Rm { id: String },
}

/// Errors of these verbs.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: ttrpc::Error,
    },
    #[error("{method}: {}", status_text(.source))]
    Call {
        method: &'static str,
        #[source]
        source: ttrpc::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn status_text(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => s.message().to_owned(),
        other => other.to_string(),
    }
}

struct Api {
    events: events_ttrpc::EventsClient,
    containers: containers_ttrpc::ContainersClient,
    tasks: tasks_ttrpc::TasksClient,
    ns: String,
    timeout: Duration,
}

impl Api {
    async fn connect(address: &str, ns: &str, timeout: Duration) -> Result<Self, CtlError> {
        let address = normalize_address(address);
        let c = ttrpc::r#async::Client::connect(&address)
            .await
            .map_err(|source| CtlError::Connect {
                address: address.clone(),
                source,
            })?;
        Ok(Self {
            events: events_ttrpc::EventsClient::new(c.clone()),
            containers: containers_ttrpc::ContainersClient::new(c.clone()),
            tasks: tasks_ttrpc::TasksClient::new(c),
            ns: ns.to_owned(),
            timeout,
        })
    }

    fn ctx(&self, timeout: Option<Duration>) -> ttrpc::context::Context {
        let mut ctx = match timeout {
            Some(t) => ttrpc::context::with_timeout(t.as_nanos() as i64),
            None => ttrpc::context::Context::default(),
        };
        ctx.add("berth-namespace".into(), self.ns.clone());
        ctx
    }

    fn c(&self) -> ttrpc::context::Context {
        self.ctx(Some(self.timeout))
    }
}

fn call(method: &'static str) -> impl FnOnce(ttrpc::Error) -> CtlError {
    move |source| CtlError::Call { method, source }
}

/// Parses a positive size in berth's one grammar (`32M`, `1G`, `512MiB`, `4096`;
/// [`berth_layout::size`]).
pub fn parse_size(s: &str) -> Result<i64, CtlError> {
    use berth_layout::size::SizeError;
    let s = s.trim();
    match berth_layout::size::parse_size(s) {
        Err(SizeError::UnknownUnit { .. }) => {
            Err(CtlError::Usage(format!("--memory {s:?}: unknown suffix")))
        }
        parsed => parsed
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| CtlError::Usage(format!("--memory {s:?}: expected a size like 64M"))),
    }
}

/// Parses `type=bind,src=/a,dst=/b,options=ro:rbind`.
pub fn parse_mount(s: &str) -> Result<cpb::BindMount, CtlError> {
    let mut m = cpb::BindMount::default();
    let mut kind = "bind";
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| CtlError::Usage(format!("--mount {s:?}: {part:?} is not key=value")))?;
        match k {
            "type" => kind = if v == "bind" { "bind" } else { "other" },
            "src" | "source" => m.source = v.to_owned(),
            "dst" | "destination" | "target" => m.destination = v.to_owned(),
            "options" => {
                m.options = v
                    .split(':')
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            _ => return Err(CtlError::Usage(format!("--mount {s:?}: unknown key {k:?}"))),
        }
    }
    if kind != "bind" {
        return Err(CtlError::Usage(format!(
            "--mount {s:?}: only type=bind is supported"
        )));
    }
    if m.source.is_empty() || m.destination.is_empty() {
        return Err(CtlError::Usage(format!(
            "--mount {s:?}: needs src= and dst="
        )));
    }
    Ok(m)
}

fn parse_signal(s: &str) -> Result<u32, CtlError> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let name = if s.starts_with("SIG") {
        s.to_owned()
    } else {
        format!("SIG{s}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as u32)
        .map_err(|_| CtlError::Usage(format!("signal {s:?}: unknown")))
}

/// FIFOs of one process, in a private directory removed on drop.
struct Fifos {
    dir: PathBuf,
}

impl Fifos {
    fn create(tag: &str) -> Result<Self, CtlError> {
        let dir = std::env::temp_dir().join(format!("berthctl-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|source| CtlError::Io {
            what: format!("create {}", dir.display()),
            source,
        })?;
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        for n in ["stdin", "stdout", "stderr"] {
            nix::unistd::mkfifo(
                &dir.join(n),
                nix::sys::stat::Mode::from_bits_truncate(0o600),
            )
            .map_err(|e| CtlError::Io {
                what: format!("mkfifo {}", dir.join(n).display()),
                source: e.into(),
            })?;
        }
        Ok(Self { dir })
    }

    fn path(&self, n: &str) -> String {
        self.dir.join(n).display().to_string()
    }

    /// Copies our stdin into the stdin FIFO and the stdout/stderr FIFOs to ours, in threads.
    /// Returns the output copiers, which end when the shim closes the FIFOs.
    fn attach(&self) -> Copiers {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let out = |p: PathBuf, to_err: bool| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Ok(mut f) = std::fs::File::open(&p) {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = f.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let r = if to_err {
                            std::io::stderr().write_all(&buf[..n])
                        } else {
                            let mut o = std::io::stdout();
                            o.write_all(&buf[..n]).and_then(|()| o.flush())
                        };
                        if r.is_err() {
                            break;
                        }
                    }
                }
                let _ = tx.send(());
            });
        };
        out(self.dir.join("stdout"), false);
        out(self.dir.join("stderr"), true);
        let p = self.dir.join("stdin");
        std::thread::spawn(move || {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                let _ = std::io::copy(&mut std::io::stdin(), &mut f);
            }
        });
        Copiers { done: rx, left: 2 }
    }
}

/// The output copiers of one process: each reports on `done` when its FIFO reached its end.
struct Copiers {
    done: tokio::sync::mpsc::UnboundedReceiver<()>,
    left: usize,
}

impl Copiers {
    /// Waits until the output ends: the shim closes the FIFOs once the process and anything
    /// holding its stdio are gone. Bounded (2 s), so a daemonized grandchild that keeps the
    /// stdio open cannot hold us forever.
    async fn finish(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.left > 0 && self.done.recv().await.is_some() {
                self.left -= 1;
            }
        })
        .await;
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn gen_id() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("c{:x}{:x}", n & 0xffff_ffff_ffff, std::process::id())
}

/// `berthctl run`; returns the exit code.
pub async fn run(address: &str, ns: &str, timeout: Duration, a: RunArgs) -> Result<i32, CtlError> {
    let api = Api::connect(address, ns, timeout).await?;
    let id = a.name.clone().unwrap_or_else(gen_id);
    let mounts = a
        .mount
        .iter()
        .map(|m| parse_mount(m))
        .collect::<Result<Vec<_>, _>>()?;
    let options = cpb::RunOptions {
        args: a.command.clone(),
        env: a.env.clone(),
        user: a.user.clone().unwrap_or_default(),
        net: a.net.clone(),
        mounts,
        memory_limit: a
            .memory
            .as_deref()
            .map(parse_size)
            .transpose()?
            .unwrap_or(0),
        cpus: a.cpus.unwrap_or(0.0),
        pids_limit: a.pids_limit.unwrap_or(0),
        cwd: a.cwd.clone().unwrap_or_default(),
        ..Default::default()
    };
    let req = cpb::CreateContainerRequest {
        container: Some(cpb::Container {
            id: id.clone(),
            image: a.image.clone(),
            runtime: a.runtime.clone(),
            snapshotter: a.snapshotter.clone(),
            ..Default::default()
        })
        .into(),
        options: Some(options).into(),
        ..Default::default()
    };
    api.containers
        .create(api.ctx(Some(timeout.max(Duration::from_secs(60)))), &req)
        .await
        .map_err(call("create container"))?;
    let result = run_task(&api, &id, &a).await;
    if a.rm && !a.detach {
        let _ = api
            .tasks
            .delete(
                api.c(),
                &tpb::DeleteTaskRequest {
                    container_id: id.clone(),
                    ..Default::default()
                },
            )
            .await;
        let _ = api
            .containers
            .delete(
                api.c(),
                &cpb::DeleteContainerRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            )
            .await;
    } else if result.is_err() {
        // A task that could not be created leaves no container behind either.
        let _ = api
            .containers
            .delete(
                api.c(),
                &cpb::DeleteContainerRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            )
            .await;
    }
    result
}

async fn run_task(api: &Api, id: &str, a: &RunArgs) -> Result<i32, CtlError> {
    // Signals are caught from before the container starts, to be forwarded to it.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|source| CtlError::Io {
            what: "handle SIGINT".into(),
            source,
        })?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| CtlError::Io {
            what: "handle SIGTERM".into(),
            source,
        })?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|source| CtlError::Io {
            what: "handle SIGHUP".into(),
            source,
        })?;
    let fifos = if a.detach {
        None
    } else {
        Some(Fifos::create(id)?)
    };
    let mut req = tpb::CreateTaskRequest {
        container_id: id.to_owned(),
        ..Default::default()
    };
    if let Some(f) = &fifos {
        req.stdin = f.path("stdin");
        req.stdout = f.path("stdout");
        req.stderr = f.path("stderr");
    }
    let copiers = fifos.as_ref().map(Fifos::attach);
    api.tasks
        .create(api.ctx(Some(Duration::from_secs(60))), &req)
        .await
        .map_err(call("create task"))?;
    // Wait before start, so even an instant exit is seen (the shim records it anyway).
    let wait_req = tpb::WaitRequest {
        container_id: id.to_owned(),
        ..Default::default()
    };
    let wait = api.tasks.wait(api.ctx(None), &wait_req);
    api.tasks
        .start(
            api.c(),
            &tpb::StartRequest {
                container_id: id.to_owned(),
                ..Default::default()
            },
        )
        .await
        .map_err(call("start task"))?;
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    tokio::pin!(wait);
    let status = loop {
        let sig = tokio::select! {
            r = &mut wait => break r.map_err(call("wait task"))?,
            _ = sigint.recv() => libc::SIGINT,
            _ = sigterm.recv() => libc::SIGTERM,
            _ = sighup.recv() => libc::SIGHUP,
        };
        let _ = api
            .tasks
            .kill(
                api.c(),
                &tpb::KillRequest {
                    container_id: id.to_owned(),
                    signal: sig as u32,
                    ..Default::default()
                },
            )
            .await;
    };
    if let Some(c) = copiers {
        c.finish().await;
    }
    Ok(status.exit_status as i32)
}

/// `berthctl containers …`.
pub async fn containers(
    address: &str,
    ns: &str,
    timeout: Duration,
    c: ContainersCommand,
) -> Result<i32, CtlError> {
    let api = Api::connect(address, ns, timeout).await?;
    match c {
        ContainersCommand::Ls { quiet } => {
            let l = api
                .containers
                .list(api.c(), &cpb::ListContainersRequest::default())
                .await
                .map_err(call("list containers"))?;
            if quiet {
                for c in &l.containers {
                    println!("{}", c.id);
                }
            } else {
                let rows: Vec<Vec<String>> = l
                    .containers
                    .iter()
                    .map(|c| {
                        vec![
                            c.id.clone(),
                            c.image.clone(),
                            c.runtime.clone(),
                            c.snapshotter.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["CONTAINER", "IMAGE", "RUNTIME", "SNAPSHOTTER"], &rows)
                );
            }
        }
        ContainersCommand::Info { id } => {
            let r = api
                .containers
                .get(
                    api.c(),
                    &cpb::GetContainerRequest {
                        id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("get container"))?;
            let c = r.container.into_option().unwrap_or_default();
            let spec: serde_json::Value =
                serde_json::from_slice(&c.spec).unwrap_or(serde_json::Value::Null);
            let v = serde_json::json!({
                "id": c.id, "image": c.image, "runtime": c.runtime, "snapshotter": c.snapshotter,
                "snapshot_key": c.snapshot_key, "labels": c.labels.iter().collect::<std::collections::BTreeMap<_,_>>(),
                "created_at": c.created_at, "updated_at": c.updated_at, "spec": spec,
            });
            println!("{}", serde_json::to_string_pretty(&v).expect("plain JSON"));
        }
        ContainersCommand::Rm { ids } => {
            for id in ids {
                api.containers
                    .delete(
                        api.c(),
                        &cpb::DeleteContainerRequest {
                            id,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(call("delete container"))?;
            }
        }
    }
    Ok(0)
}

/// `berthctl tasks …`.
pub async fn tasks(
    address: &str,
    ns: &str,
    timeout: Duration,
    c: TasksCommand,
) -> Result<i32, CtlError> {
    let api = Api::connect(address, ns, timeout).await?;
    match c {
        TasksCommand::Ls => {
            let l = api
                .tasks
                .list(api.c(), &tpb::ListTasksRequest::default())
                .await
                .map_err(call("list tasks"))?;
            let rows: Vec<Vec<String>> = l
                .tasks
                .iter()
                .map(|t| {
                    let exit = if t.status == "stopped" {
                        t.exit_status.to_string()
                    } else {
                        String::new()
                    };
                    vec![
                        t.container_id.clone(),
                        t.pid.to_string(),
                        t.status.clone(),
                        exit,
                    ]
                })
                .collect();
            print!("{}", table(&["TASK", "PID", "STATUS", "EXIT"], &rows));
        }
        TasksCommand::Kill { signal, all, id } => {
            let signal = parse_signal(&signal)?;
            api.tasks
                .kill(
                    api.c(),
                    &tpb::KillRequest {
                        container_id: id,
                        signal,
                        all,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("kill task"))?;
        }
        TasksCommand::Exec {
            exec_id,
            cwd,
            env,
            id,
            command,
        } => {
            let exec_id = exec_id.unwrap_or_else(gen_id);
            let fifos = Fifos::create(&format!("{id}-{exec_id}"))?;
            let copiers = fifos.attach();
            api.tasks
                .exec(
                    api.ctx(Some(Duration::from_secs(60))),
                    &tpb::ExecProcessRequest {
                        container_id: id.clone(),
                        exec_id: exec_id.clone(),
                        args: command,
                        env,
                        cwd,
                        stdin: fifos.path("stdin"),
                        stdout: fifos.path("stdout"),
                        stderr: fifos.path("stderr"),
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("exec"))?;
            let w = api
                .tasks
                .wait(
                    api.ctx(None),
                    &tpb::WaitRequest {
                        container_id: id,
                        exec_id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("wait exec"))?;
            copiers.finish().await;
            return Ok(w.exit_status as i32);
        }
        TasksCommand::Ps { id } => {
            let r = api
                .tasks
                .pids(
                    api.c(),
                    &tpb::ListPidsRequest {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("list pids"))?;
            println!("PID");
            for p in r.pids {
                println!("{p}");
            }
        }
        TasksCommand::Pause { id } => {
            api.tasks
                .pause(
                    api.c(),
                    &tpb::PauseTaskRequest {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("pause task"))?;
        }
        TasksCommand::Resume { id } => {
            api.tasks
                .resume(
                    api.c(),
                    &tpb::ResumeTaskRequest {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("resume task"))?;
        }
        TasksCommand::Metrics { format, id } => {
            if format != "table" && format != "json" {
                return Err(CtlError::Usage(format!(
                    "--format {format:?}: expected table or json"
                )));
            }
            let m = api
                .tasks
                .metrics(
                    api.c(),
                    &tpb::MetricsRequest {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("metrics"))?;
            let j = crate::tasks::metrics_json(&m);
            if format == "json" {
                println!("{j:#}");
            } else {
                print_metrics(&j);
            }
        }
        TasksCommand::Logs { follow, tail, id } => {
            let mut stream = api
                .tasks
                .logs(
                    api.ctx(None),
                    &tpb::LogsRequest {
                        container_id: id,
                        follow,
                        tail: tail.map_or(-1, |t| t.min(i64::MAX as u64) as i64),
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("logs"))?;
            let mut o = std::io::stdout();
            loop {
                match stream.recv().await {
                    Ok(Some(c)) => {
                        if o.write_all(&c.data).and_then(|()| o.flush()).is_err() {
                            return Ok(0);
                        }
                    }
                    Ok(None) | Err(ttrpc::Error::Eof) => break,
                    Err(source) => {
                        return Err(CtlError::Call {
                            method: "logs",
                            source,
                        })
                    }
                }
            }
        }
        TasksCommand::Rm { id } => {
            let r = api
                .tasks
                .delete(
                    api.c(),
                    &tpb::DeleteTaskRequest {
                        container_id: id,
                        ..Default::default()
                    },
                )
                .await
                .map_err(call("delete task"))?;
            println!("{} exited with status {}", r.container_id, r.exit_status);
        }
    }
    Ok(0)
}

/// The table form of `tasks metrics`: one `KEY VALUE` row per figure.
fn print_metrics(j: &serde_json::Value) {
    let mut rows = Vec::new();
    for (k, v) in [
        ("cgroup", &j["cgroup_path"]),
        ("cgroup_version", &j["cgroup_version"]),
    ] {
        rows.push(vec![
            k.to_owned(),
            v.to_string().trim_matches('"').to_owned(),
        ]);
    }
    for group in ["memory", "cpu", "pids"] {
        if let Some(o) = j[group].as_object() {
            for (k, v) in o {
                if let Some(stat) = v.as_object() {
                    for (sk, sv) in stat {
                        rows.push(vec![format!("{group}.{k}.{sk}"), sv.to_string()]);
                    }
                } else {
                    rows.push(vec![format!("{group}.{k}"), v.to_string()]);
                }
            }
        }
    }
    for d in j["io"].as_array().into_iter().flatten() {
        let dev = format!("io.{}:{}", d["major"], d["minor"]);
        for k in ["rbytes", "wbytes", "rios", "wios"] {
            rows.push(vec![format!("{dev}.{k}"), d[k].to_string()]);
        }
    }
    print!("{}", table(&["METRIC", "VALUE"], &rows));
}

/// `berthctl events [TOPIC-PREFIX…]`: prints events as they come, one line each
/// (`<unix-nanos> <namespace> <topic> <json>`), until interrupted.
pub async fn events(
    address: &str,
    timeout: Duration,
    topics: Vec<String>,
) -> Result<i32, CtlError> {
    let api = Api::connect(address, "default", timeout).await?;
    let mut stream = api
        .events
        .subscribe(
            ttrpc::context::Context::default(),
            &epb::SubscribeRequest {
                topics,
                ..Default::default()
            },
        )
        .await
        .map_err(call("subscribe"))?;
    loop {
        match stream.recv().await {
            Ok(Some(e)) => {
                let mut o = std::io::stdout();
                let line = format!("{} {} {} {}\n", e.timestamp, e.namespace, e.topic, e.event);
                if o.write_all(line.as_bytes())
                    .and_then(|()| o.flush())
                    .is_err()
                {
                    return Ok(0);
                }
            }
            Ok(None) | Err(ttrpc::Error::Eof) => return Ok(0),
            Err(source) => {
                return Err(CtlError::Call {
                    method: "events",
                    source,
                })
            }
        }
    }
}

/// The statistics as JSON (berthctl's `--format json`): the same field names as the message.
pub fn metrics_json(m: &tpb::MetricsResponse) -> serde_json::Value {
    let mem = m.memory.clone().into_option().unwrap_or_default();
    let cpu = m.cpu.clone().into_option().unwrap_or_default();
    let pids = m.pids.clone().into_option().unwrap_or_default();
    let stat: std::collections::BTreeMap<_, _> = mem.stat.iter().collect();
    serde_json::json!({
        "container_id": m.container_id,
        "timestamp": m.timestamp,
        "cgroup_version": m.cgroup_version,
        "cgroup_path": m.cgroup_path,
        "memory": {"usage": mem.usage, "peak": mem.peak, "limit": mem.limit, "stat": stat},
        "cpu": {"usage_usec": cpu.usage_usec, "user_usec": cpu.user_usec,
                "system_usec": cpu.system_usec, "nr_periods": cpu.nr_periods,
                "nr_throttled": cpu.nr_throttled, "throttled_usec": cpu.throttled_usec},
        "pids": {"current": pids.current, "limit": pids.limit},
        "io": m.io.iter().map(|i| serde_json::json!({"major": i.major, "minor": i.minor,
            "rbytes": i.rbytes, "wbytes": i.wbytes, "rios": i.rios, "wios": i.wios}))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_mounts_parse() {
        assert_eq!(parse_size("32M").unwrap(), 32 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12Q")
            .unwrap_err()
            .to_string()
            .contains("unknown suffix"));
        assert!(parse_size("-1").is_err());
        let m = parse_mount("type=bind,src=/a,dst=/b,options=ro:rbind").unwrap();
        assert_eq!((m.source.as_str(), m.destination.as_str()), ("/a", "/b"));
        assert_eq!(m.options, vec!["ro".to_string(), "rbind".into()]);
        assert!(parse_mount("type=volume,src=/a,dst=/b")
            .unwrap_err()
            .to_string()
            .contains("only type=bind"));
        assert!(parse_mount("src=/a")
            .unwrap_err()
            .to_string()
            .contains("needs src= and dst="));
        assert!(parse_mount("src")
            .unwrap_err()
            .to_string()
            .contains("is not key=value"));
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert!(parse_signal("NOPE").is_err());
    }
}
