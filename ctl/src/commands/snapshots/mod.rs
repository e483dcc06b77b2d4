//! `berthctl snapshots …` (like `ctr snapshots`): the Snapshots service from the command line
//! — `ls`, `tree`, `rm`, `usage`, plus `prepare`, `view`, `commit` and `mounts` for scripting
//! and debugging — on one snapshotter (`-s`, berthd's default when not given).

mod commit;
mod ls;
mod mounts;
mod prepare;
mod rm;
mod tree;
mod usage;
mod view;

use std::future::Future;

use clap::Subcommand;

use berth_api::proto::{snapshots as pb, snapshots_ttrpc::SnapshotsClient};

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// Options of `berthctl snapshots` (the namespace is the global `-n`, wherever it stands).
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    #[arg(long, short = 's', default_value = "", help = concat!(
        "Snapshotter (", snapshotters!(), "); berthd's default when not given"
    ))]
    snapshotter: String,
    #[command(subcommand)]
    command: Command,
}

/// The `berthctl snapshots` verbs.
#[derive(Debug, Subcommand)]
enum Command {
    /// List snapshots: KEY, PARENT, KIND.
    #[command(alias = "list")]
    Ls(ls::LsArgs),
    /// Show snapshots as a tree of parents and children.
    Tree,
    /// Remove snapshots (children before parents); tries every key, fails if any failed.
    #[command(alias = "remove", alias = "delete")]
    Rm(rm::RmArgs),
    /// Disk usage of snapshots (all when no key is given): KEY, SIZE, INODES.
    Usage(usage::UsageArgs),
    /// Create an active snapshot and print its mounts.
    Prepare(prepare::PrepareArgs),
    /// Create a read-only view of a committed snapshot and print its mounts.
    View(view::ViewArgs),
    /// Commit an active snapshot under a name.
    Commit(commit::CommitArgs),
    /// Print the mounts of an active snapshot or view (`type source options`).
    Mounts(mounts::MountsArgs),
}

/// Runs one `snapshots` verb.
pub async fn run(g: &Globals, args: SnapshotsArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let s = Snapshots {
        client: berthd.snapshots(),
        berthd,
        snapshotter: args.snapshotter,
    };
    match args.command {
        Command::Ls(a) => ls::run(&s, a).await,
        Command::Tree => tree::run(&s).await,
        Command::Rm(a) => rm::run(&s, a).await,
        Command::Usage(a) => usage::run(&s, a).await,
        Command::Prepare(a) => prepare::run(&s, a).await,
        Command::View(a) => view::run(&s, a).await,
        Command::Commit(a) => commit::run(&s, a).await,
        Command::Mounts(a) => mounts::run(&s, a).await,
    }
}

/// The Snapshots service of berthd, for one snapshotter.
struct Snapshots {
    berthd: Berthd,
    client: SnapshotsClient,
    snapshotter: String,
}

impl Snapshots {
    /// A context with the namespace and the `--timeout` deadline.
    fn ctx(&self) -> ttrpc::context::Context {
        self.berthd.ctx()
    }

    /// Awaits one call for at most `--timeout`.
    async fn bounded<T>(
        &self,
        method: &'static str,
        fut: impl Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, Error> {
        self.berthd.bounded(method, fut).await
    }

    /// `List`, sorted by key.
    async fn list(&self, filters: Vec<String>) -> Result<Vec<pb::Info>, Error> {
        let req = pb::ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters,
            ..Default::default()
        };
        let mut v = self
            .bounded("Snapshots.List", self.client.list(self.ctx(), &req))
            .await?
            .info;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }
}

/// Mounts as `type source options` lines.
fn print_mounts(m: &[pb::Mount]) {
    for m in m {
        println!("{} {} {}", m.type_, m.source, m.options.join(","));
    }
}
