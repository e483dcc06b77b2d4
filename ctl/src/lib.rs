//! berthctl: the command-line client of berthd's API (ctr-like verbs).

mod hosts;
mod pull;
mod snapshots;
mod storage;
mod system;
mod tasks;
mod transfer_client;

use std::{ffi::OsString, time::Duration};

use clap::{Parser, Subcommand, ValueEnum};

use berth_api::client::{Client, ClientError};
use berth_api::proto::introspection::{Plugin, PluginStatus};
use berth_api::address::DEFAULT_ADDRESS;

/// berthctl command line.
#[derive(Debug, Parser)]
#[command(
    name = "berthctl",
    version,
    about = "Talk to berthd over its ttrpc API"
)]
struct Args {
    /// berthd's socket (`unix:///path` or a path); on a QEMU host, the bridged virtio-serial socket.
    #[arg(long, short = 'a', global = true, env = "BERTH_ADDRESS", default_value = DEFAULT_ADDRESS)]
    address: String,
    /// Namespace of the storage verbs (like ctr's `-n`).
    #[arg(long, short = 'n', global = true, env = "BERTH_NAMESPACE", default_value = berth_api::keys::DEFAULT_NAMESPACE)]
    namespace: String,
    /// berth-init's control API socket, for the `system` verbs.
    #[arg(long, global = true, env = "BERTH_INIT_ADDRESS", default_value = crate::system::DEFAULT_INIT_ADDRESS)]
    init_address: String,
    /// Seconds to wait for berthd's answer.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the client's and the server's version.
    Version,
    /// Engine plugins.
    #[command(subcommand, alias = "plugin")]
    Plugins(PluginsCommand),
    #[command(flatten)]
    Storage(storage::StorageCommand),
    /// Snapshots (like `ctr snapshots`).
    #[command(alias = "snapshot")]
    Snapshots(crate::snapshots::SnapshotsArgs),
    /// Registry endpoints a pull would use, as berthd resolves them (certs.d hosts.toml).
    #[command(subcommand, alias = "host")]
    Hosts(hosts::HostsCommand),
    /// berthd's configuration: reload it without a restart.
    #[command(subcommand)]
    Config(hosts::ConfigCommand),
    /// berth-init: status, log, reboot, poweroff, service restart (uses --init-address).
    #[command(subcommand)]
    System(crate::system::SystemCommand),
    /// Run a container from an image (exit code: the container's).
    Run(crate::tasks::RunArgs),
    /// Containers (metadata).
    #[command(subcommand, alias = "container", alias = "c")]
    Containers(crate::tasks::ContainersCommand),
    /// Tasks (running containers).
    #[command(subcommand, alias = "task", alias = "t")]
    Tasks(crate::tasks::TasksCommand),
    /// Print container and task events as they happen.
    Events {
        /// Topic prefixes (e.g. /tasks/exit); none: all.
        topics: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List plugins with their status (like `ctr plugins ls`).
    #[command(alias = "list")]
    Ls {
        /// `type==<type>` or `id==<id>`; repeatable, all must match.
        #[arg(long, short = 'f')]
        filter: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only `type.id`.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for programs.
    Json,
}

/// Runs berthctl with `args` (argv including argv[0]); returns the process exit code.
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
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthctl: error: {}", ClientError::Runtime(e));
            return 1;
        }
    };
    if let Command::System(command) = &args.command {
        let timeout = Duration::from_secs(args.timeout);
        return match rt.block_on(crate::system::run(command, &args.init_address, timeout)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("berthctl: error: {e}");
                1
            }
        };
    }
    if matches!(
        args.command,
        Command::Run(_) | Command::Containers(_) | Command::Tasks(_) | Command::Events { .. }
    ) {
        let timeout = Duration::from_secs(args.timeout);
        let (address, ns) = (args.address.clone(), args.namespace.clone());
        let r = rt.block_on(async move {
            match args.command {
                Command::Run(a) => crate::tasks::run(&address, &ns, timeout, a).await,
                Command::Containers(c) => {
                    crate::tasks::containers(&address, &ns, timeout, c).await
                }
                Command::Tasks(c) => crate::tasks::tasks(&address, &ns, timeout, c).await,
                Command::Events { topics } => {
                    crate::tasks::events(&address, timeout, topics).await
                }
                _ => unreachable!("matched above"),
            }
        });
        return match r {
            Ok(code) => code,
            Err(e) => {
                eprintln!("berthctl: error: {e}");
                1
            }
        };
    }
    match rt.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berthctl: error: {e}");
            1
        }
    }
}

async fn run(args: Args) -> Result<(), storage::Error> {
    let timeout = Duration::from_secs(args.timeout);
    let connect = || Client::connect(&args.address, timeout);
    match args.command {
        Command::Snapshots(s) => {
            crate::snapshots::run(&args.address, Duration::from_secs(args.timeout), s).await?
        }
        Command::Version => {
            println!("Client:");
            println!("  Version:  {}", berth_api::version::VERSION);
            println!("  Revision: {}", berth_api::version::REVISION);
            let (v, r) = connect().await?.version().await?;
            println!();
            println!("Server:");
            println!("  Version:  {v}");
            println!("  Revision: {r}");
        }
        Command::Plugins(PluginsCommand::Ls {
            filter,
            format,
            quiet,
        }) => {
            let plugins = connect().await?.plugins(filter).await?;
            if quiet {
                for p in &plugins {
                    println!("{}.{}", p.type_, p.id);
                }
            } else if format == Format::Json {
                let v: Vec<_> = plugins.iter().map(plugin_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("json of plain values")
                );
            } else {
                print!("{}", plugins_table(&plugins));
            }
        }
        Command::Storage(c) => storage::run(&args.address, timeout, &args.namespace, c).await?,
        Command::Hosts(c) => hosts::run_hosts(&args.address, timeout, c).await?,
        Command::Config(c) => hosts::run_config(&args.address, timeout, c).await?,
        Command::System(_) => unreachable!("system verbs are handled before connecting to berthd"),
        Command::Run(_) | Command::Containers(_) | Command::Tasks(_) | Command::Events { .. } => {
            unreachable!("container verbs are handled before")
        }
    }
    Ok(())
}

fn status_name(p: &Plugin) -> &'static str {
    match p.status.enum_value() {
        Ok(PluginStatus::OK) => "ok",
        Ok(PluginStatus::SKIPPED) => "skipped",
        Ok(PluginStatus::ERROR) => "error",
        Err(_) => "unknown",
    }
}

fn plugin_json(p: &Plugin) -> serde_json::Value {
    serde_json::json!({
        "type": p.type_,
        "id": p.id,
        "status": status_name(p),
        "reason": p.reason,
        "requires": p.requires,
        "exports": p.exports.iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// A left-aligned table with two spaces between columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            l.push_str(c);
            if i + 1 < n {
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

fn plugins_table(plugins: &[Plugin]) -> String {
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            vec![
                p.type_.clone(),
                p.id.clone(),
                status_name(p).to_string(),
                p.reason.clone(),
            ]
        })
        .collect();
    table(&["TYPE", "ID", "STATUS", "REASON"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["TYPE", "ID"],
            &[vec!["berth.service.v1".into(), "version".into()]],
        );
        assert_eq!(t, "TYPE              ID\nberth.service.v1  version\n");
    }
}
