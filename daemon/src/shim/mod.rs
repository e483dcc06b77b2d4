//! The shim process (applet `berth-shim`): one per container, started by berthd, serving the
//! shim API (`berth.shim.v1`) on the socket berthd names (`<state>/s/<hash>`).
//!
//! The shim's core — creating the container, its stdio and log, exit records, exec, the
//! process state machine — is `berth_engine::tasks::shim`; this module is the process's entry
//! and its ttrpc server ([`service`], its stdio streams in [`attach`]). It lives here,
//! beside berthd's services, because every ttrpc server of berth is a thin adapter in this
//! crate: the engine stays a ttrpc client only (of its shims), which a grep for server trait
//! impls in `engine/` checks. It is still its own process, never part of berthd: berthd
//! starts `berth-shim serve …` from the same binary.

pub mod attach;
pub mod service;

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use berth_api::errdefs::chain;
use berth_api::proto::shim_ttrpc;
use berth_engine::tasks::shim::args::{report, Args, ShimCommand};
use berth_engine::tasks::shim::{self, exec, Copiers, Launched, Shim};
use berth_engine::tasks::Error;

/// Runs the shim (argv including argv[0]); returns the exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return 2;
        }
    };
    match args.command {
        ShimCommand::Serve(a) => {
            let result = match shim::launch(&a) {
                Ok(Launched::Parent) => return 0,
                Ok(Launched::Shim(shim, copiers)) => {
                    berth_engine::failpoint::hit("shim.after_create");
                    let r = serve(shim.clone(), copiers, a.socket_path());
                    if r.is_err() {
                        // The container exists and its init waits for a start no one can
                        // ask for now: end it before reporting.
                        shim.abort();
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => 0,
                Err(e) => {
                    report(&format!("error: {}", chain(&e)));
                    1
                }
            }
        }
        ShimCommand::Exec(a) => exec::helper_main(&a),
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Serves `shim` until its container is deleted, on a single-threaded runtime started only
/// now: the container exists, so libcontainer's clone is behind us.
fn serve(shim: Arc<Shim>, copiers: Copiers, sock: std::path::PathBuf) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("start the async runtime"))?;
    rt.block_on(run(shim, copiers, sock))
}

async fn run(shim: Arc<Shim>, copiers: Copiers, sock: std::path::PathBuf) -> Result<(), Error> {
    let _ = std::fs::remove_file(&sock);
    let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
        .map_err(io_err("handle SIGCHLD"))?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(io_err("handle SIGTERM"))?;
    let listener = tokio::net::UnixListener::bind(&sock)
        .map_err(io_err(format!("listen on {}", sock.display())))?;
    let _ = std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    // Which file is ours: after a delete, berthd removes this directory and a new container
    // of the same id may bind a new socket at the same path while this shim still finishes.
    let ours = std::fs::symlink_metadata(&sock)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let service = Arc::new(service::ShimService {
        shim: shim.clone(),
        done: done_tx,
    });
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(listener.into())
        .register_service(shim_ttrpc::create_shim(service));
    server.start().await.map_err(|e| Error::Shim {
        id: shim.id().to_owned(),
        reason: format!("ttrpc server: {e}"),
    })?;
    let pid = shim.init_pid();
    let _ = std::fs::write(shim.dir().join("shim.pid"), std::process::id().to_string());
    report(&format!("ok {pid}"));
    // berthd's pipe is done with; stdout goes to the shim log like stderr.
    let _ = nix::unistd::dup2(2, 1);
    tracing::info!(id = %shim.id(), pid, "container created");
    shim.reap();
    loop {
        tokio::select! {
            _ = sigchld.recv() => shim.reap(),
            _ = sigterm.recv() => { tracing::info!("SIGTERM: the shim keeps running while its container lives"); }
            _ = done_rx.recv() => break,
        }
    }
    // Let the last answer go out.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = server.shutdown().await;
    drop(copiers);
    let still_ours = std::fs::symlink_metadata(&sock)
        .ok()
        .map(|m| (m.dev(), m.ino()))
        .is_some_and(|now| Some(now) == ours);
    if still_ours {
        let _ = std::fs::remove_file(&sock);
    }
    Ok(())
}
