//! berthctl: the command-line client of berthd and berth-init (ctr-like verbs). It links
//! berth-api only: no engine code, just the wire contract.
//!
//! - `commands`: every verb, one file per verb under `commands/<group>/<verb>.rs`;
//! - `globals`: the global flags (address, namespace, init address, timeout), read once;
//! - `connect`: the one way to reach berthd and berth-init;
//! - `output`: the one `--format`, the one table layout, JSON and cell formats;
//! - `error`: the one error type and the exit-code policy.
//!
//! This file holds the command line's top (`Args`), the dispatch and [`main_with_args`].

mod commands;
mod connect;
mod error;
mod globals;
mod output;

use std::ffi::OsString;

use clap::{Parser, Subcommand};

use commands::{
    config, containers, content, events, gc, hosts, images, leases, namespaces, plugins, run,
    snapshots, system, tasks, version,
};
use error::{Error, EXIT_USAGE};
use globals::Globals;

/// berthctl command line.
#[derive(Debug, Parser)]
#[command(
    name = "berthctl",
    version,
    about = "Talk to berthd over its ttrpc API"
)]
struct Args {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// The verb groups and the verbs without a group, in `berthctl --help`'s order.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print the client's and the server's version.
    Version,
    /// Engine plugins.
    #[command(subcommand, alias = "plugin")]
    Plugins(plugins::Command),
    /// Namespaces (like `ctr namespaces`).
    #[command(subcommand, alias = "namespace", alias = "ns")]
    Namespaces(namespaces::Command),
    /// Blobs in the content store, as this namespace sees them.
    #[command(subcommand)]
    Content(content::Command),
    /// Image records.
    #[command(subcommand, alias = "image", alias = "i")]
    Images(images::Command),
    /// Leases protecting content from garbage collection.
    #[command(subcommand, alias = "lease")]
    Leases(leases::Command),
    /// Run a garbage collection now and show what it removed.
    Gc(gc::GcArgs),
    /// Snapshots (like `ctr snapshots`).
    #[command(alias = "snapshot")]
    Snapshots(snapshots::SnapshotsArgs),
    /// Registry endpoints a pull would use, as berthd resolves them (certs.d hosts.toml).
    #[command(subcommand, alias = "host")]
    Hosts(hosts::Command),
    /// berthd's configuration: reload it without a restart.
    #[command(subcommand)]
    Config(config::Command),
    /// berth-init: status, log, reboot, poweroff, service restart (uses --init-address).
    #[command(subcommand)]
    System(system::Command),
    /// Run a container from an image (exit code: the container's).
    Run(run::RunArgs),
    /// Containers (metadata).
    #[command(subcommand, alias = "container", alias = "c")]
    Containers(containers::Command),
    /// Tasks (running containers).
    #[command(subcommand, alias = "task", alias = "t")]
    Tasks(tasks::Command),
    /// Print container and task events as they happen.
    Events(events::EventsArgs),
}

/// Runs one verb; returns the exit code of a success (`run`, `tasks exec`: the process's).
async fn dispatch(g: &Globals, command: Command) -> Result<i32, Error> {
    let r = match command {
        Command::Version => version::run(g).await,
        Command::Plugins(c) => plugins::run(g, c).await,
        Command::Namespaces(c) => namespaces::run(g, c).await,
        Command::Content(c) => content::run(g, c).await,
        Command::Images(c) => images::run(g, c).await,
        Command::Leases(c) => leases::run(g, c).await,
        Command::Gc(a) => gc::run(g, a).await,
        Command::Snapshots(a) => snapshots::run(g, a).await,
        Command::Hosts(c) => hosts::run(g, c).await,
        Command::Config(c) => config::run(g, c).await,
        Command::System(c) => system::run(g, c).await,
        Command::Run(a) => return run::run(g, a).await,
        Command::Containers(c) => containers::run(g, c).await,
        Command::Tasks(c) => return tasks::run(g, c).await,
        Command::Events(a) => events::run(g, a).await,
    };
    r.map(|()| 0)
}

/// Runs berthctl with `args` (argv including `argv[0]`); returns the process exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    // Like other command-line tools, end quietly when the reader of our output goes away
    // (`berthctl plugins ls | head`) instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE installs no handler and is done
    // before this process starts any thread.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
        .and_then(|rt| rt.block_on(dispatch(&args.globals, args.command)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("berthctl: error: {e}");
            e.exit_code()
        }
    }
}
