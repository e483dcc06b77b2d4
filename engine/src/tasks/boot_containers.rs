//! Boot containers: containers berthd starts by itself from its configuration, with a restart
//! policy — how an edge node runs its workload with no operator present.
//!
//! Configuration, `[plugins."berth.boot.v1"]` in berthd.toml (docs/containers.md, "Boot
//! containers"):
//!
//! ```toml
//! [plugins."berth.boot.v1"]
//! namespace = "default"        # where boot containers live
//! image_timeout_secs = 120     # after this, a missing image is logged as an error
//! backoff_initial_ms = 1000    # first restart delay, doubled per quick failure
//! backoff_max_ms = 60000       # longest restart delay
//!
//! [[plugins."berth.boot.v1".containers]]
//! name = "web"
//! image = "localhost/berth/busybox:latest"
//! args = ["httpd", "-f"]       # default: the image's entrypoint + cmd
//! env = ["PORT=8080"]
//! restart = "on-failure"       # "no" (default), "on-failure" or "always"
//! max_retries = 5              # on-failure only; 0 (default) = no limit
//! memory = "64M"               # memory.max
//! cpus = 0.5                   # cpu.max quota
//! pids_limit = 100             # pids.max
//! net = "none"                 # "none" (default) or "host"
//! ```
//!
//! One supervisor task per container. It first looks for a task of that name left by a
//! previous berthd (re-adopted from its shim by [`Tasks::open`]): a running
//! one is waited for, never started a second time; one that exited while berthd was down
//! counts as an exit. Otherwise it creates the container (waiting for its image: preloaded
//! archives are imported in the background after berthd starts), creates and starts the
//! task, and waits. On each exit (a `/tasks/exit` event, like any task's) it applies the
//! restart policy: a restart deletes the task and the container and creates both again from
//! the image (a fresh writable layer, and the current configuration — Kubernetes' semantics
//! rather than Docker's), after a back-off delay, and is logged and published as
//! `/boot/restart`. The exited run's output is kept as `<state>/boot/<ns>/<name>/previous.log`.
//!
//! The supervisor drives the same core operations the Containers and Tasks services call
//! ([`Tasks::create_container`], [`Tasks::create_task`], [`Tasks::start_task`], …), so a boot
//! container's events and checks are a client's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tracing::{error, info, warn};

use berth_api::errdefs::{chain, Classify, Kind};

use super::{Error, NewContainer, RunOptions, Status, TaskIo, Tasks};

/// The plugin section in berthd.toml.
pub const PLUGIN: &str = "berth.boot.v1";
/// Label on every container berthd created as a boot container (value `"true"`); a container
/// of the same name without it is an operator's and is left alone.
pub const MANAGED_LABEL: &str = "berth.boot/managed";
/// Label with the number of restarts since berthd first started the container this boot.
pub const RESTARTS_LABEL: &str = "berth.boot/restarts";
/// A run at least this long resets the back-off to its initial delay.
const STABLE_RUN: Duration = Duration::from_secs(10);
/// How often a supervisor looks for a missing image.
const IMAGE_POLL: Duration = Duration::from_millis(500);

/// A bad `[plugins."berth.boot.v1"]` section.
#[derive(Debug, thiserror::Error)]
#[error("[plugins.\"{PLUGIN}\"] in {}: {message}", sources_display(.sources))]
pub struct BootConfigError {
    /// The config files the section comes from.
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

/// When a boot container is started again after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Never (the stopped task stays, with its exit status, for `tasks ls`).
    No,
    /// After a non-zero exit, at most `max_retries` times (0: no limit).
    OnFailure { max_retries: u32 },
    /// After every exit.
    Always,
}

impl Restart {
    fn name(self) -> &'static str {
        match self {
            Restart::No => "no",
            Restart::OnFailure { .. } => "on-failure",
            Restart::Always => "always",
        }
    }
}

/// One configured boot container.
#[derive(Debug, Clone, PartialEq)]
pub struct BootContainer {
    /// Container id (and task id).
    pub name: String,
    /// Image name in the boot namespace.
    pub image: String,
    /// Command; empty: the image's entrypoint + cmd.
    pub args: Vec<String>,
    /// `KEY=VALUE` entries over the image's environment.
    pub env: Vec<String>,
    /// Restart policy.
    pub restart: Restart,
    /// memory.max in bytes.
    pub memory_limit: Option<i64>,
    /// CPUs for cpu.max.
    pub cpus: Option<f64>,
    /// pids.max.
    pub pids_limit: Option<i64>,
    /// "none" or "host".
    pub net: String,
    /// `user[:group]` or `uid[:gid]`; empty: the image's.
    pub user: String,
    /// Working directory; empty: the image's.
    pub cwd: String,
    /// Snapshotter; empty: the engine's default.
    pub snapshotter: String,
}

/// The boot containers and how they are supervised.
#[derive(Debug, Clone, PartialEq)]
pub struct BootConfig {
    /// Namespace of the boot containers and their images.
    pub namespace: String,
    /// After this long without the image, an error is logged (the wait goes on).
    pub image_timeout: Duration,
    /// First restart delay; doubled after each run shorter than 10 s.
    pub backoff_initial: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// The containers, in configuration order.
    pub containers: Vec<BootContainer>,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            image_timeout: Duration::from_secs(120),
            backoff_initial: Duration::from_millis(1000),
            backoff_max: Duration::from_millis(60_000),
            containers: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    namespace: Option<String>,
    image_timeout_secs: Option<u64>,
    backoff_initial_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    #[serde(default)]
    containers: Vec<RawContainer>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RestartName {
    No,
    OnFailure,
    Always,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContainer {
    name: String,
    image: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    restart: Option<RestartName>,
    max_retries: Option<u32>,
    memory: Option<String>,
    cpus: Option<f64>,
    pids_limit: Option<i64>,
    net: Option<String>,
    user: Option<String>,
    cwd: Option<String>,
    snapshotter: Option<String>,
}

/// Parses a positive size in berth's one grammar (`32M`, `1G`, `512MiB`, `4096`;
/// [`berth_layout::size`]).
fn parse_size(s: &str) -> Option<i64> {
    berth_layout::size::parse_size(s)
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .filter(|n| *n > 0)
}

impl BootConfig {
    /// Reads `[plugins."berth.boot.v1"]` (absent: no boot containers). `sources` are the
    /// files the configuration came from; an error names the ones that hold the section.
    pub fn from_plugins(
        plugins: &BTreeMap<String, toml::Value>,
        sources: &[PathBuf],
    ) -> Result<Self, BootConfigError> {
        let Some(value) = plugins.get(PLUGIN) else {
            return Ok(Self::default());
        };
        // The files that mention the section (all of them if none can be read).
        let holding: Vec<PathBuf> = sources
            .iter()
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains(PLUGIN)))
            .cloned()
            .collect();
        let err = |message: String| BootConfigError {
            sources: if holding.is_empty() {
                sources.to_vec()
            } else {
                holding.clone()
            },
            message,
        };
        let section: Section = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().trim().to_string();
            err(if path == "." {
                inner
            } else {
                format!("key {path}: {inner}")
            })
        })?;
        let mut cfg = Self::default();
        if let Some(ns) = section.namespace {
            crate::metadata::validate::identifier("namespace", &ns)
                .map_err(|e| err(format!("key namespace: {e}")))?;
            cfg.namespace = ns;
        }
        if let Some(s) = section.image_timeout_secs {
            cfg.image_timeout = Duration::from_secs(s);
        }
        if let Some(ms) = section.backoff_initial_ms {
            if ms == 0 {
                return Err(err("key backoff_initial_ms: must be at least 1".into()));
            }
            cfg.backoff_initial = Duration::from_millis(ms);
        }
        if let Some(ms) = section.backoff_max_ms {
            cfg.backoff_max = Duration::from_millis(ms);
        }
        if cfg.backoff_max < cfg.backoff_initial {
            return Err(err(format!(
                "key backoff_max_ms: {} is less than backoff_initial_ms ({})",
                cfg.backoff_max.as_millis(),
                cfg.backoff_initial.as_millis()
            )));
        }
        for (i, raw) in section.containers.into_iter().enumerate() {
            let at = |key: &str, msg: String| err(format!("key containers[{i}].{key}: {msg}"));
            crate::metadata::validate::identifier("container", &raw.name)
                .map_err(|e| at("name", e.to_string()))?;
            if cfg.containers.iter().any(|c| c.name == raw.name) {
                return Err(at("name", format!("{:?} is declared twice", raw.name)));
            }
            let named = |key: &str, msg: String| at(key, format!("({:?}) {msg}", raw.name));
            if raw.image.trim().is_empty() {
                return Err(named("image", "must not be empty".into()));
            }
            if let Some(bad) = raw
                .env
                .iter()
                .find(|e| !e.contains('=') || e.starts_with('='))
            {
                return Err(named("env", format!("{bad:?}: expected KEY=VALUE")));
            }
            let restart = match (raw.restart.unwrap_or(RestartName::No), raw.max_retries) {
                (RestartName::OnFailure, m) => Restart::OnFailure {
                    max_retries: m.unwrap_or(0),
                },
                (r, Some(_)) => {
                    return Err(named(
                        "max_retries",
                        format!(
                            "applies only to restart = \"on-failure\", not {:?}",
                            match r {
                                RestartName::No => "no",
                                _ => "always",
                            }
                        ),
                    ))
                }
                (RestartName::No, None) => Restart::No,
                (RestartName::Always, None) => Restart::Always,
            };
            let memory_limit = match &raw.memory {
                None => None,
                Some(m) => Some(parse_size(m).ok_or_else(|| {
                    named(
                        "memory",
                        format!("{m:?}: expected a size like 64M, 1G or 4096"),
                    )
                })?),
            };
            if let Some(c) = raw.cpus {
                if !(c.is_finite() && c > 0.0) {
                    return Err(named(
                        "cpus",
                        format!("{c}: expected a positive number like 0.5"),
                    ));
                }
            }
            if let Some(p) = raw.pids_limit {
                if p <= 0 {
                    return Err(named(
                        "pids_limit",
                        format!("{p}: expected a positive number"),
                    ));
                }
            }
            let net = raw.net.unwrap_or_else(|| "none".into());
            if net != "none" && net != "host" {
                return Err(named(
                    "net",
                    format!("{net:?}: expected \"none\" or \"host\""),
                ));
            }
            cfg.containers.push(BootContainer {
                name: raw.name,
                image: raw.image,
                args: raw.args,
                env: raw.env,
                restart,
                memory_limit,
                cpus: raw.cpus,
                pids_limit: raw.pids_limit,
                net,
                user: raw.user.unwrap_or_default(),
                cwd: raw.cwd.unwrap_or_default(),
                snapshotter: raw.snapshotter.unwrap_or_default(),
            });
        }
        Ok(cfg)
    }
}

/// Whether a container that exited with `status` after `restarts` restarts is started again.
fn should_restart(policy: Restart, status: Option<u32>, restarts: u32) -> Result<(), String> {
    match policy {
        Restart::No => Err("restart = \"no\"".into()),
        Restart::Always => Ok(()),
        Restart::OnFailure { .. } if status == Some(0) => {
            Err("it succeeded and restart = \"on-failure\"".into())
        }
        Restart::OnFailure { max_retries } if max_retries > 0 && restarts >= max_retries => Err(
            format!("{restarts} restarts reached max_retries = {max_retries}"),
        ),
        Restart::OnFailure { .. } => Ok(()),
    }
}

/// The delay before the next restart: the initial delay doubled per quick failure in a row
/// (`streak`, 0 for the first), capped.
fn backoff(cfg: &BootConfig, streak: u32) -> Duration {
    cfg.backoff_initial
        .checked_mul(1u32 << streak.min(20))
        .unwrap_or(cfg.backoff_max)
        .min(cfg.backoff_max)
}

fn status_text(status: Option<u32>) -> String {
    match status {
        Some(s) => format!("status {s}"),
        None => "an unknown status (its shim is gone)".into(),
    }
}

/// Starts one supervisor per boot container (nothing when none is configured). `state` is
/// berthd's state directory (previous runs' logs go under `<state>/boot`).
pub fn spawn(tasks: Arc<Tasks>, cfg: BootConfig, state: &Path) {
    if cfg.containers.is_empty() {
        return;
    }
    info!(
        namespace = %cfg.namespace,
        "boot containers: supervising {}",
        cfg.containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let cfg = Arc::new(cfg);
    for c in cfg.containers.clone() {
        let (tasks, cfg, logs) = (
            tasks.clone(),
            cfg.clone(),
            state.join("boot").join(&cfg.namespace).join(&c.name),
        );
        tokio::spawn(async move { supervise(tasks, cfg, c, logs).await });
    }
}

/// What the supervisor found for its container.
enum Found {
    /// No task: create and start one.
    Nothing,
    /// A task that was created but never started.
    Created,
    /// A running (or paused) task, re-adopted from its shim.
    Running(u32),
    /// A task whose init exited (while berthd was down, or its shim is gone).
    Exited(Option<u32>),
}

async fn find(t: &Tasks, ns: &str, id: &str) -> Found {
    match t.process(ns, id, "").await {
        Err(_) => Found::Nothing,
        Ok(p) => match p.status {
            Status::Created => Found::Created,
            Status::Running | Status::Paused | Status::Pausing => Found::Running(p.pid),
            Status::Stopped => Found::Exited(Some(p.exit_status)),
            Status::Unknown => Found::Exited(None),
        },
    }
}

async fn supervise(t: Arc<Tasks>, cfg: Arc<BootConfig>, c: BootContainer, logs: PathBuf) {
    let ns = cfg.namespace.as_str();
    let name = c.name.as_str();
    // A container of this name that berthd did not create as a boot container is left alone.
    if let Ok(existing) = t.container(ns, name) {
        if existing.labels.get(MANAGED_LABEL).map(String::as_str) != Some("true") {
            error!(
                "boot container {name:?}: a container {name:?} that is not a boot container \
                 exists in namespace {ns:?}; not started (remove it or rename the boot container)"
            );
            return;
        }
    }
    let mut restarts: u32 = t
        .container(ns, name)
        .ok()
        .and_then(|c| c.labels.get(RESTARTS_LABEL)?.parse().ok())
        .unwrap_or(0);
    let mut streak: u32 = 0;
    loop {
        let started = Instant::now();
        let status = match find(&t, ns, name).await {
            Found::Running(pid) => {
                info!("boot container {name:?}: already running under its shim (pid {pid}), not started again");
                wait_exit(&t, ns, name).await
            }
            Found::Exited(status) => {
                info!(
                    "boot container {name:?}: found stopped with {} (it exited before this berthd started)",
                    status_text(status)
                );
                status
            }
            found => {
                let begun = if matches!(found, Found::Created) {
                    t.start_task(ns, name).await.map_err(StartError::Retry)
                } else {
                    start(&t, &cfg, &c, restarts).await
                };
                match begun {
                    Ok(pid) => {
                        info!(
                            "boot container {name:?}: started (pid {pid}, image {:?}, {:.3} s)",
                            c.image,
                            started.elapsed().as_secs_f64()
                        );
                        wait_exit(&t, ns, name).await
                    }
                    Err(StartError::Permanent(e)) => {
                        error!("boot container {name:?}: cannot be created: {}", chain(&e));
                        return;
                    }
                    Err(StartError::Retry(e)) => {
                        error!("boot container {name:?}: cannot start: {}", chain(&e));
                        None
                    }
                }
            }
        };
        let ran = started.elapsed();
        if let Err(why) = should_restart(c.restart, status, restarts) {
            info!(
                "boot container {name:?}: exited with {}; not restarted: {why}",
                status_text(status)
            );
            return;
        }
        if ran >= STABLE_RUN {
            streak = 0;
        }
        let delay = backoff(&cfg, streak);
        streak = streak.saturating_add(1);
        restarts = restarts.saturating_add(1);
        let limit = match c.restart {
            Restart::OnFailure { max_retries } if max_retries > 0 => format!(" of {max_retries}"),
            _ => String::new(),
        };
        warn!(
            "boot container {name:?}: exited with {}; restart {restarts}{limit} in {:.1} s (restart = {:?})",
            status_text(status),
            delay.as_secs_f64(),
            c.restart.name()
        );
        t.publish(
            ns,
            "/boot/restart",
            serde_json::json!({"container_id": name, "exit_status": status,
                "restart_count": restarts, "delay_ms": delay.as_millis() as u64}),
        );
        keep_log(&t, ns, name, &logs);
        if let Err(e) = remove(&t, ns, name).await {
            error!(
                "boot container {name:?}: cannot remove the exited task and container, so it cannot be restarted: {}",
                chain(&e)
            );
            return;
        }
        tokio::time::sleep(delay).await;
    }
}

/// Keeps the exited run's output as `<logs>/previous.log`.
fn keep_log(t: &Tasks, ns: &str, name: &str, logs: &Path) {
    let from = t.task_dir(ns, name).join("log");
    if !from.exists() {
        return;
    }
    if let Err(e) = std::fs::create_dir_all(logs)
        .and_then(|()| std::fs::copy(&from, logs.join("previous.log")).map(|_| ()))
    {
        warn!(
            "boot container {name:?}: cannot keep the output of the exited run in {}: {e}",
            logs.display()
        );
    }
}

/// Deletes the task (if any) and the container (if any).
async fn remove(t: &Arc<Tasks>, ns: &str, name: &str) -> Result<(), Error> {
    if t.process(ns, name, "").await.is_ok() {
        t.delete_task(ns, name).await?;
    }
    if t.container(ns, name).is_ok() {
        let (t, ns, name) = (t.clone(), ns.to_owned(), name.to_owned());
        tokio::task::spawn_blocking(move || t.delete_container(&ns, &name))
            .await
            .map_err(|e| Error::Executor(format!("delete container: {e}")))??;
    }
    Ok(())
}

/// Creates the container (waiting for its image), then its task, and starts it.
async fn start(
    t: &Arc<Tasks>,
    cfg: &BootConfig,
    c: &BootContainer,
    restarts: u32,
) -> Result<u32, StartError> {
    let ns = cfg.namespace.as_str();
    // A stale container of an earlier boot (state disk) or run: created again from the
    // current configuration.
    remove(t, ns, &c.name).await.map_err(StartError::Retry)?;
    let waited = Instant::now();
    let mut told_waiting = false;
    let mut told_timeout = false;
    loop {
        let (t2, ns2) = (t.clone(), ns.to_owned());
        let new = container(c, restarts);
        let created = tokio::task::spawn_blocking(move || t2.create_container(&ns2, new))
            .await
            .map_err(|e| StartError::Retry(Error::Executor(format!("create container: {e}"))))?;
        match created {
            Ok(_) => break,
            // The image is not there yet (preload still importing), or not unpacked yet.
            Err(e) if not_ready(&e) => {
                if !told_waiting {
                    info!(
                        "boot container {:?}: waiting for image {:?} in namespace {ns:?}",
                        c.name, c.image
                    );
                    told_waiting = true;
                }
                if !told_timeout && waited.elapsed() >= cfg.image_timeout {
                    error!(
                        "boot container {:?}: image {:?} is not in namespace {ns:?} after {} s \
                         (preloaded archives are imported at start: see berthd's \"preload:\" \
                         lines and `berthctl images ls`); still waiting: {}",
                        c.name,
                        c.image,
                        cfg.image_timeout.as_secs(),
                        chain(&e)
                    );
                    told_timeout = true;
                }
                tokio::time::sleep(IMAGE_POLL).await;
            }
            Err(e) => return Err(StartError::Permanent(e)),
        }
    }
    if told_waiting {
        info!(
            "boot container {:?}: image {:?} found after {:.1} s",
            c.name,
            c.image,
            waited.elapsed().as_secs_f64()
        );
    }
    let started = match t.create_task(ns, &c.name, &TaskIo::default()).await {
        Ok(_) => t.start_task(ns, &c.name).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(pid) => Ok(pid),
        Err(e) => {
            // The container stays for the next attempt to replace; its task is cleaned up.
            let _ = remove(t, ns, &c.name).await;
            Err(StartError::Retry(e))
        }
    }
}

/// Why a start failed: [`StartError::Permanent`] stops the supervisor, [`StartError::Retry`]
/// counts as a failed run for the restart policy.
enum StartError {
    Permanent(Error),
    Retry(Error),
}

/// Whether a create failed because the image (or its unpacked snapshot) is not there yet.
fn not_ready(e: &Error) -> bool {
    matches!(e.kind(), Kind::NotFound | Kind::FailedPrecondition)
}

/// Waits for the task's init to exit; its exit status (`None`: the shim went away without
/// recording one). A shim that dies while waited for is not an error here: its recorded exit
/// stands in.
async fn wait_exit(t: &Tasks, ns: &str, id: &str) -> Option<u32> {
    match t.wait(ns, id, "").await {
        Ok(e) => Some(e.exit_status),
        Err(_) => t.recorded_exit(ns, id).map(|e| e.exit_status),
    }
}

/// The container for `c`, labelled as a boot container.
fn container(c: &BootContainer, restarts: u32) -> NewContainer {
    let labels = [
        (MANAGED_LABEL.to_owned(), "true".to_owned()),
        (RESTARTS_LABEL.to_owned(), restarts.to_string()),
    ];
    NewContainer {
        id: c.name.clone(),
        image: c.image.clone(),
        snapshotter: c.snapshotter.clone(),
        labels: labels.into_iter().collect(),
        options: RunOptions {
            args: c.args.clone(),
            env: c.env.clone(),
            user: c.user.clone(),
            net: c.net.clone(),
            memory_limit: c.memory_limit,
            cpus: c.cpus,
            pids_limit: c.pids_limit,
            cwd: c.cwd.clone(),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as the whole berthd.toml at `/etc/berth/berthd.toml`.
    fn parse(text: &str) -> Result<BootConfig, String> {
        let cfg = crate::config::Config::parse_str(text, Path::new("/etc/berth/berthd.toml"))
            .map_err(|e| e.to_string())?;
        BootConfig::from_plugins(&cfg.plugins, &cfg.sources).map_err(|e| e.to_string())
    }

    const FULL: &str = r#"
version = 1
[plugins."berth.boot.v1"]
namespace = "edge"
backoff_initial_ms = 200
backoff_max_ms = 1000

[[plugins."berth.boot.v1".containers]]
name = "hello"
image = "localhost/berth/busybox:latest"
args = ["echo", "hi"]

[[plugins."berth.boot.v1".containers]]
name = "web"
image = "localhost/web:1"
env = ["PORT=8080"]
restart = "on-failure"
max_retries = 3
memory = "32M"
cpus = 0.25
pids_limit = 20
net = "host"
"#;

    #[test]
    fn full_section() {
        let c = parse(FULL).unwrap();
        assert_eq!(c.namespace, "edge");
        assert_eq!(c.backoff_initial, Duration::from_millis(200));
        assert_eq!(c.containers.len(), 2);
        assert_eq!(c.containers[0].restart, Restart::No);
        assert_eq!(c.containers[0].net, "none");
        assert_eq!(c.containers[0].args, ["echo", "hi"]);
        let web = &c.containers[1];
        assert_eq!(web.restart, Restart::OnFailure { max_retries: 3 });
        assert_eq!(web.memory_limit, Some(32 << 20));
        assert_eq!(web.cpus, Some(0.25));
        assert_eq!(web.pids_limit, Some(20));
        assert_eq!(web.net, "host");
        assert_eq!(parse("version = 1\n").unwrap(), BootConfig::default());
    }

    #[test]
    fn bad_values_name_the_file_and_key() {
        let cases = [
            ("restart = \"sometimes\"", "key containers[0].restart: unknown variant `sometimes`, expected one of `no`, `on-failure`, `always`"),
            ("restart = \"always\"\nmax_retries = 2", "key containers[0].max_retries: (\"a\") applies only to restart = \"on-failure\", not \"always\""),
            ("memory = \"lots\"", "key containers[0].memory: (\"a\") \"lots\": expected a size like 64M, 1G or 4096"),
            ("cpus = -1.0", "key containers[0].cpus: (\"a\") -1: expected a positive number like 0.5"),
            ("pids_limit = 0", "key containers[0].pids_limit: (\"a\") 0: expected a positive number"),
            ("net = \"bridge\"", "key containers[0].net: (\"a\") \"bridge\": expected \"none\" or \"host\""),
            ("env = [\"NOVALUE\"]", "key containers[0].env: (\"a\") \"NOVALUE\": expected KEY=VALUE"),
            ("imagee = \"x\"", "key containers[0].imagee: unknown field `imagee`, expected one of `name`, `image`"),
        ];
        for (line, want) in cases {
            let text = format!(
                "[[plugins.\"berth.boot.v1\".containers]]\nname = \"a\"\nimage = \"i\"\n{line}\n"
            );
            let e = parse(&text).unwrap_err();
            assert!(
                e.starts_with("[plugins.\"berth.boot.v1\"] in /etc/berth/berthd.toml: "),
                "{e}"
            );
            assert!(e.contains(want), "{line}: {e}");
        }
        let missing =
            parse("[[plugins.\"berth.boot.v1\".containers]]\nname = \"a\"\n").unwrap_err();
        assert!(missing.contains("missing field `image`"), "{missing}");
        let twice = parse(
            "[[plugins.\"berth.boot.v1\".containers]]\nname = \"a\"\nimage = \"i\"\n\
             [[plugins.\"berth.boot.v1\".containers]]\nname = \"a\"\nimage = \"j\"\n",
        )
        .unwrap_err();
        assert!(
            twice.contains("key containers[1].name: \"a\" is declared twice"),
            "{twice}"
        );
        let bad_name =
            parse("[[plugins.\"berth.boot.v1\".containers]]\nname = \"-a\"\nimage = \"i\"\n")
                .unwrap_err();
        assert!(bad_name.contains("key containers[0].name: "), "{bad_name}");
        let backoff =
            parse("[plugins.\"berth.boot.v1\"]\nbackoff_initial_ms = 500\nbackoff_max_ms = 100\n")
                .unwrap_err();
        assert!(
            backoff.contains("key backoff_max_ms: 100 is less than backoff_initial_ms (500)"),
            "{backoff}"
        );
    }

    #[test]
    fn restart_policy_and_backoff() {
        let on_failure = Restart::OnFailure { max_retries: 2 };
        assert!(should_restart(Restart::No, Some(1), 0).is_err());
        assert!(should_restart(Restart::Always, Some(0), 100).is_ok());
        assert!(should_restart(on_failure, Some(0), 0).is_err());
        assert!(should_restart(on_failure, None, 0).is_ok());
        assert!(should_restart(on_failure, Some(3), 1).is_ok());
        assert_eq!(
            should_restart(on_failure, Some(3), 2).unwrap_err(),
            "2 restarts reached max_retries = 2"
        );
        assert!(should_restart(Restart::OnFailure { max_retries: 0 }, Some(3), 1000).is_ok());
        let cfg = BootConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1000),
            ..Default::default()
        };
        let delays: Vec<u128> = (0..6).map(|s| backoff(&cfg, s).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&cfg, 40).as_millis(), 1000);
    }
}
