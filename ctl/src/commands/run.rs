//! `berthctl run IMAGE [COMMAND…]`: runs a container from an image (Containers service,
//! `Create` — berthd builds the spec from the image — then Tasks service `Create`, `Attach`,
//! `Start`) and exits with the container's status (128 + signal for a signalled one).
//!
//! The container's stdio travels over the API connection (`Tasks.Attach`, attached before
//! the start so no output is missed): its stdout and stderr to ours, our stdin to it with
//! `-i` (else its stdin is /dev/null), a terminal with `-t` (ours raw with `-it`, Ctrl-P
//! Ctrl-Q detaches). berthctl forwards SIGINT, SIGTERM and SIGHUP to it. With `--rm` it
//! deletes the task and the container afterwards; with `-d` it returns after the start
//! (output goes to the container's log; `tasks attach` reaches it). A task that cannot be
//! created leaves no container behind.

use std::time::Duration;

use berth_api::client::stdio::{attach, AttachOptions};
use berth_api::proto::{containers as cpb, tasks as tpb};

use super::process::{check_tty, gen_id, pump, stdin_is_tty, window_size, Ended, OnSignal, Target};
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
    /// Keep the container's stdin open and attach ours to it (else it reads /dev/null).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Give the container a terminal (with -i: ours goes raw; Ctrl-P Ctrl-Q detaches).
    #[arg(long, short = 't')]
    tty: bool,
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
    if !a.detach {
        check_tty(a.interactive, a.tty)?;
    }
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
        // A task that could not be created (or started: `run_task` deleted it) leaves no
        // container behind either; one that ran keeps it (its task refuses the delete).
        let _ = berthd
            .containers()
            .delete(berthd.ctx(), &delete_container())
            .await;
    }
    result
}

/// Creates, attaches to, starts and (unless detached) follows the task to its exit.
async fn run_task(berthd: &Berthd, id: &str, a: &RunArgs) -> Result<i32, Error> {
    let tasks = berthd.tasks();
    let req = tpb::CreateTaskRequest {
        container_id: id.to_owned(),
        stdin: a.interactive,
        terminal: a.tty,
        ..Default::default()
    };
    tasks
        .create(berthd.ctx_for(Duration::from_secs(60)), &req)
        .await
        .map_err(Error::call("create task"))?;
    let start = tpb::StartRequest {
        container_id: id.to_owned(),
        ..Default::default()
    };
    if a.detach {
        tasks
            .start(berthd.ctx(), &start)
            .await
            .map_err(Error::call("start task"))?;
        println!("{id}");
        return Ok(0);
    }
    // Attached before the start: everything the container writes comes to us.
    let opts = AttachOptions::new(id)
        .stdin(a.interactive)
        .tty(a.tty, window_size());
    let started = async {
        let session = attach(&tasks, berthd.stream_ctx(), opts)
            .await
            .map_err(Error::call("attach"))?;
        tasks
            .start(berthd.ctx(), &start)
            .await
            .map_err(Error::call("start task"))?;
        Ok::<_, Error>(session)
    };
    let session = match started.await {
        Ok(s) => s,
        Err(e) => {
            let req = tpb::DeleteTaskRequest {
                container_id: id.to_owned(),
                ..Default::default()
            };
            let _ = tasks.delete(berthd.ctx(), &req).await;
            return Err(e);
        }
    };
    let t = Target {
        berthd,
        container_id: id,
        exec_id: "",
    };
    let raw = a.tty && a.interactive && stdin_is_tty();
    match pump(t, session, a.interactive, raw, OnSignal::Forward).await? {
        Ended::Exit(status) => Ok(status as i32),
        Ended::Detached => {
            if a.rm {
                eprintln!("berthctl: --rm not applied to a detached container: remove it with `tasks rm` and `containers rm` once it exits");
            }
            Ok(0)
        }
    }
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
