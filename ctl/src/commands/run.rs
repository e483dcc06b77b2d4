//! `berthctl run IMAGE [COMMAND…]`: runs a container from an image (Containers service,
//! `Create` — berthd builds the spec from the image — then Tasks service `Create`, `Wait`,
//! `Start`) and exits with the container's status (128 + signal for a signalled one).
//!
//! berthctl creates FIFOs in a private temporary directory for the container's stdin, stdout
//! and stderr, forwards SIGINT, SIGTERM and SIGHUP to it, and waits. With `--rm` it deletes
//! the task and the container afterwards; with `-d` it returns after the start (output goes
//! to the container's log). A task that cannot be created leaves no container behind.

use std::time::Duration;

use berth_api::proto::{containers as cpb, tasks as tpb};

use super::process::{gen_id, Fifos};
use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `berthctl run` arguments.
#[derive(Debug, clap::Args)]
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
    #[arg(long, default_value = "", help = concat!(
        "Snapshotter (", snapshotters!(), "; default: berthd's default)"
    ))]
    snapshotter: String,
    /// Image name.
    image: String,
    /// Command and arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs the container; returns its exit status (0 with `-d`).
pub async fn run(g: &Globals, a: RunArgs) -> Result<i32, Error> {
    let berthd = Berthd::connect(g).await?;
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
    // Creating a container may unpack its image: at least a minute.
    let create_timeout = berthd.timeout().max(Duration::from_secs(60));
    berthd
        .containers()
        .create(berthd.ctx_for(create_timeout), &req)
        .await
        .map_err(Error::call("create container"))?;
    let result = run_task(&berthd, &id, &a).await;
    let delete_container = || cpb::DeleteContainerRequest {
        id: id.clone(),
        ..Default::default()
    };
    if a.rm && !a.detach {
        let req = tpb::DeleteTaskRequest {
            container_id: id.clone(),
            ..Default::default()
        };
        let _ = berthd.tasks().delete(berthd.ctx(), &req).await;
        let _ = berthd
            .containers()
            .delete(berthd.ctx(), &delete_container())
            .await;
    } else if result.is_err() {
        // A task that could not be created leaves no container behind either.
        let _ = berthd
            .containers()
            .delete(berthd.ctx(), &delete_container())
            .await;
    }
    result
}

/// Creates, starts and (unless detached) waits for the task, forwarding signals to it.
async fn run_task(berthd: &Berthd, id: &str, a: &RunArgs) -> Result<i32, Error> {
    use tokio::signal::unix::{signal, SignalKind};
    // Signals are caught from before the container starts, to be forwarded to it.
    let mut sigint = signal(SignalKind::interrupt()).map_err(Error::io("handle SIGINT"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(Error::io("handle SIGTERM"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(Error::io("handle SIGHUP"))?;
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
    let tasks = berthd.tasks();
    tasks
        .create(berthd.ctx_for(Duration::from_secs(60)), &req)
        .await
        .map_err(Error::call("create task"))?;
    // Wait before start, so even an instant exit is seen (the shim records it anyway).
    let wait_req = tpb::WaitRequest {
        container_id: id.to_owned(),
        ..Default::default()
    };
    let wait = tasks.wait(berthd.stream_ctx(), &wait_req);
    let start = tpb::StartRequest {
        container_id: id.to_owned(),
        ..Default::default()
    };
    tasks
        .start(berthd.ctx(), &start)
        .await
        .map_err(Error::call("start task"))?;
    if a.detach {
        println!("{id}");
        return Ok(0);
    }
    tokio::pin!(wait);
    let status = loop {
        let sig = tokio::select! {
            r = &mut wait => break r.map_err(Error::call("wait task"))?,
            _ = sigint.recv() => libc::SIGINT,
            _ = sigterm.recv() => libc::SIGTERM,
            _ = sighup.recv() => libc::SIGHUP,
        };
        let kill = tpb::KillRequest {
            container_id: id.to_owned(),
            signal: sig as u32,
            ..Default::default()
        };
        let _ = tasks.kill(berthd.ctx(), &kill).await;
    };
    if let Some(c) = copiers {
        c.finish().await;
    }
    Ok(status.exit_status as i32)
}

/// Parses a positive size in berth's one grammar (`32M`, `1G`, `512MiB`, `4096`;
/// [`berth_layout::size`]).
fn parse_size(s: &str) -> Result<i64, Error> {
    use berth_layout::size::SizeError;
    let s = s.trim();
    match berth_layout::size::parse_size(s) {
        Err(SizeError::UnknownUnit { .. }) => {
            Err(Error::Usage(format!("--memory {s:?}: unknown suffix")))
        }
        parsed => parsed
            .ok()
            .and_then(|n| i64::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Usage(format!("--memory {s:?}: expected a size like 64M"))),
    }
}

/// Parses `type=bind,src=/a,dst=/b,options=ro:rbind`.
fn parse_mount(s: &str) -> Result<cpb::BindMount, Error> {
    let mut m = cpb::BindMount::default();
    let mut kind = "bind";
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--mount {s:?}: {part:?} is not key=value")))?;
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
            _ => return Err(Error::Usage(format!("--mount {s:?}: unknown key {k:?}"))),
        }
    }
    if kind != "bind" {
        return Err(Error::Usage(format!(
            "--mount {s:?}: only type=bind is supported"
        )));
    }
    if m.source.is_empty() || m.destination.is_empty() {
        return Err(Error::Usage(format!("--mount {s:?}: needs src= and dst=")));
    }
    Ok(m)
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
    }
}
