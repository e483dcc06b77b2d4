//! berthctl: the command-line client of berthd and berth-init (ctr-like verbs), on the node,
//! through the QEMU bridge, or over a node's remote API. It links berth-api (the wire
//! contract) and berth-remote's client side and PKI: no engine code.
//!
//! - `commands`: every verb, one file per verb under `commands/<group>/<verb>.rs`;
//! - `globals`: the global flags (address, namespace, init address, timeout, remote), read once;
//! - `connect`: the one way to reach berthd and berth-init, locally or remotely;
//! - `remote`: which node (`--remote`, contexts) and its credentials; `contexts`: the contexts
//!   file; `fanout`: `--nodes`, one verb on several nodes;
//! - `output`: the one `--format`, the one table layout, JSON and cell formats;
//! - `error`: the one error type and the exit-code policy.
//!
//! This file holds the command line's top (`Args`), the dispatch and [`main_with_args`].

mod commands;
mod connect;
mod contexts;
mod error;
mod fanout;
mod globals;
mod output;
mod remote;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use commands::{
    config, containers, content, events, gc, hosts, images, leases, namespaces, node, pki, plugins,
    run, snapshots, system, tasks, version,
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
    /// berthd's configuration (reload it without a restart), and berthctl's contexts.
    #[command(subcommand)]
    Config(config::Command),
    /// berth-init: status, log, reboot, poweroff, service restart, reload (uses --init-address).
    #[command(subcommand)]
    System(system::Command),
    /// The node's own configuration on its state disk (node file, berthd drop-ins, registry
    /// hosts, remote API credentials), through berth-init.
    #[command(subcommand)]
    Node(node::Command),
    /// The fleet PKI, on this machine: a CA, node and client certificates for the remote API.
    #[command(subcommand)]
    Pki(pki::Command),
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
        Command::Node(c) => node::run(g, c).await,
        Command::Pki(c) => pki::run(c),
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
    let usage = |e: clap::Error| {
        let _ = e.print();
        if e.use_stderr() {
            EXIT_USAGE
        } else {
            0
        }
    };
    let matches = match Args::command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => return usage(e),
    };
    let mut parsed = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => return usage(e),
    };
    let explicit = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        )
    };
    parsed.globals.address_explicit = explicit("address") || explicit("init_address");
    let g = &parsed.globals;
    let result = if g.nodes.is_empty() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)
            .and_then(|rt| rt.block_on(dispatch(g, parsed.command)))
    } else {
        match remote::resolve(g, g.address_explicit) {
            Ok(remote::Target::FanOut(nodes)) => {
                fanout::run(&args, &fanout::command_path(&matches), &nodes).map(|()| 0)
            }
            Ok(_) => unreachable!("--nodes resolves to a fan-out"),
            Err(e) => Err(e),
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A certificate refused after the TLS 1.3 handshake breaks the connection, and
            // ttrpc says only that; the node's own words are kept by the transport.
            match g.resolved_remote().and_then(|r| r.refusal()) {
                Some(refusal) => eprintln!("berthctl: error: {refusal}"),
                None => eprintln!("berthctl: error: {e}"),
            }
            e.exit_code()
        }
    }
}
