//! `berthctl snapshots …`: the Snapshots service from the command line, like
//! `ctr snapshots` — `ls`, `tree`, `rm`, `usage`, plus `prepare`, `view`, `commit` and
//! `mounts` for scripting and debugging. Tables for people, `--format json` for scripts, `-q`
//! for keys only.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};

use berth_api::keys::{DEFAULT_NAMESPACE, NAMESPACE_KEY};
use berth_api::proto::{snapshots as pb, snapshots_ttrpc::SnapshotsClient};
use berth_api::client::{normalize_address, ClientError};
use crate::table;

/// Options of `berthctl snapshots`.
#[derive(Debug, clap::Args)]
pub struct SnapshotsArgs {
    /// Namespace (like `ctr -n`).
    #[arg(long, short = 'n', env = "BERTH_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Snapshotter (`overlayfs`, `native`); berthd's default when not given.
    #[arg(long, short = 's', default_value = "")]
    snapshotter: String,
    #[command(subcommand)]
    command: SnapshotsCommand,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Pretty-printed JSON for scripts.
    Json,
}

/// The `berthctl snapshots` subcommands.
#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// List snapshots: KEY, PARENT, KIND.
    #[command(alias = "list")]
    Ls {
        /// containerd filter (`kind==committed`, `labels.x`, …); repeatable, any may match.
        #[arg(long, short = 'f')]
        filter: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only keys.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show snapshots as a tree of parents and children.
    Tree,
    /// Remove snapshots (children before parents); tries every key, fails if any failed.
    #[command(alias = "remove", alias = "delete")]
    Rm {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Disk usage of snapshots (all when no key is given): KEY, SIZE, INODES.
    Usage {
        keys: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Create an active snapshot and print its mounts.
    Prepare { key: String, parent: Option<String> },
    /// Create a read-only view of a committed snapshot and print its mounts.
    View { key: String, parent: String },
    /// Commit an active snapshot under a name.
    Commit { name: String, key: String },
    /// Print the mounts of an active snapshot or view (`type source options`).
    Mounts { key: String },
}

struct Conn {
    client: SnapshotsClient,
    address: String,
    timeout: Duration,
    namespace: String,
    snapshotter: String,
}

impl Conn {
    fn ctx(&self) -> ttrpc::context::Context {
        let mut c =
            ttrpc::context::with_timeout(self.timeout.as_nanos().min(i64::MAX as u128) as i64);
        c.add(NAMESPACE_KEY.to_string(), self.namespace.clone());
        c
    }

    async fn bounded<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, ClientError> {
        berth_api::client::bounded(&self.address, self.timeout, method, fut).await
    }

    async fn list(&self, filters: Vec<String>) -> Result<Vec<pb::Info>, ClientError> {
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

    async fn usage(&self, key: &str) -> Result<pb::UsageResponse, ClientError> {
        let req = pb::UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
            ..Default::default()
        };
        self.bounded("Snapshots.Usage", self.client.usage(self.ctx(), &req))
            .await
    }
}

fn kind_name(i: &pb::Info) -> &'static str {
    match i.kind.enum_value() {
        Ok(pb::Kind::VIEW) => "view",
        Ok(pb::Kind::ACTIVE) => "active",
        Ok(pb::Kind::COMMITTED) => "committed",
        _ => "unknown",
    }
}

fn info_json(i: &pb::Info) -> serde_json::Value {
    serde_json::json!({
        "key": i.name,
        "parent": i.parent,
        "kind": kind_name(i),
        "created_ns": i.created_at_ns,
        "updated_ns": i.updated_at_ns,
        "labels": i.labels.iter().collect::<BTreeMap<_, _>>(),
    })
}

/// Bytes as people read them: `4.0 KiB`, `12.3 MiB`.
pub fn human_size(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The tree of `infos`: roots (no parent, or a parent not listed) first, children indented
/// under their parent with `\_ `, each level sorted by name.
pub fn tree(infos: &[pb::Info]) -> String {
    let names: std::collections::BTreeSet<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut roots = Vec::new();
    for i in infos {
        if i.parent.is_empty() || !names.contains(i.parent.as_str()) {
            roots.push(i.name.as_str());
        } else {
            children
                .entry(i.parent.as_str())
                .or_default()
                .push(i.name.as_str());
        }
    }
    roots.sort();
    let mut out = String::new();
    fn walk(out: &mut String, children: &BTreeMap<&str, Vec<&str>>, name: &str, depth: usize) {
        if depth == 0 {
            out.push_str(name);
        } else {
            out.push_str(&format!("{}\\_ {name}", "  ".repeat(depth)));
        }
        out.push('\n');
        if let Some(kids) = children.get(name) {
            let mut kids = kids.clone();
            kids.sort();
            for k in kids {
                walk(out, children, k, depth + 1);
            }
        }
    }
    for r in roots {
        walk(&mut out, &children, r, 0);
    }
    out
}

fn print_mounts(m: &[pb::Mount]) {
    for m in m {
        println!("{} {} {}", m.type_, m.source, m.options.join(","));
    }
}

/// Runs `berthctl snapshots …` against berthd at `address`.
pub async fn run(address: &str, timeout: Duration, args: SnapshotsArgs) -> Result<(), ClientError> {
    let address = normalize_address(address);
    let inner = match tokio::time::timeout(timeout, ttrpc::r#async::Client::connect(&address)).await
    {
        Ok(r) => r.map_err(|source| ClientError::Connect {
            address: address.clone(),
            source,
        })?,
        Err(_) => {
            return Err(ClientError::Timeout {
                address,
                method: "connect",
                timeout,
            })
        }
    };
    let c = Conn {
        client: SnapshotsClient::new(inner),
        address,
        timeout,
        namespace: args.namespace,
        snapshotter: args.snapshotter,
    };
    let sn = c.snapshotter.clone();
    match args.command {
        SnapshotsCommand::Ls {
            filter,
            format,
            quiet,
        } => {
            let infos = c.list(filter).await?;
            if quiet {
                for i in &infos {
                    println!("{}", i.name);
                }
            } else if format == Format::Json {
                let v: Vec<_> = infos.iter().map(info_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("json of plain values")
                );
            } else {
                let rows: Vec<Vec<String>> = infos
                    .iter()
                    .map(|i| vec![i.name.clone(), i.parent.clone(), kind_name(i).to_string()])
                    .collect();
                print!("{}", table(&["KEY", "PARENT", "KIND"], &rows));
            }
        }
        SnapshotsCommand::Tree => print!("{}", tree(&c.list(Vec::new()).await?)),
        SnapshotsCommand::Rm { keys } => {
            let mut last = None;
            for key in keys {
                let req = pb::RemoveSnapshotRequest {
                    snapshotter: sn.clone(),
                    key: key.clone(),
                    ..Default::default()
                };
                if let Err(e) = c
                    .bounded("Snapshots.Remove", c.client.remove(c.ctx(), &req))
                    .await
                {
                    if let Some(prev) = last.replace(e) {
                        eprintln!("berthctl: error: {prev}");
                    }
                }
            }
            if let Some(e) = last {
                return Err(e);
            }
        }
        SnapshotsCommand::Usage { keys, format } => {
            let keys = if keys.is_empty() {
                c.list(Vec::new())
                    .await?
                    .into_iter()
                    .map(|i| i.name)
                    .collect()
            } else {
                keys
            };
            let mut rows = Vec::new();
            for k in keys {
                let u = c.usage(&k).await?;
                rows.push((k, u.size, u.inodes));
            }
            if format == Format::Json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(k, s, n)| serde_json::json!({"key": k, "size": s, "inodes": n}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v).expect("json of plain values")
                );
            } else {
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(k, s, n)| vec![k, human_size(s), n.to_string()])
                    .collect();
                print!("{}", table(&["KEY", "SIZE", "INODES"], &rows));
            }
        }
        SnapshotsCommand::Prepare { key, parent } => {
            let req = pb::PrepareSnapshotRequest {
                snapshotter: sn,
                key,
                parent: parent.unwrap_or_default(),
                ..Default::default()
            };
            let r = c
                .bounded("Snapshots.Prepare", c.client.prepare(c.ctx(), &req))
                .await?;
            print_mounts(&r.mounts);
        }
        SnapshotsCommand::View { key, parent } => {
            let req = pb::ViewSnapshotRequest {
                snapshotter: sn,
                key,
                parent,
                ..Default::default()
            };
            let r = c
                .bounded("Snapshots.View", c.client.view(c.ctx(), &req))
                .await?;
            print_mounts(&r.mounts);
        }
        SnapshotsCommand::Commit { name, key } => {
            let req = pb::CommitSnapshotRequest {
                snapshotter: sn,
                name,
                key,
                ..Default::default()
            };
            c.bounded("Snapshots.Commit", c.client.commit(c.ctx(), &req))
                .await?;
        }
        SnapshotsCommand::Mounts { key } => {
            let req = pb::MountsRequest {
                snapshotter: sn,
                key,
                ..Default::default()
            };
            let r = c
                .bounded("Snapshots.Mounts", c.client.mounts(c.ctx(), &req))
                .await?;
            print_mounts(&r.mounts);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, parent: &str) -> pb::Info {
        pb::Info {
            name: name.into(),
            parent: parent.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tree_nests_children_under_parents() {
        let t = tree(&[
            info("c", "b"),
            info("a", ""),
            info("b", "a"),
            info("v", "a"),
            info("x", ""),
        ]);
        assert_eq!(t, "a\n  \\_ b\n    \\_ c\n  \\_ v\nx\n");
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4096), "4.0 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }
}
