//! The global flags — berthd's address, the namespace, berth-init's address, the timeout —
//! read in this one place and handed to every verb as [`Globals`].
//!
//! They are `global`, so they may stand anywhere on the command line (`berthctl -n x images
//! ls` and `berthctl images ls -n x` are the same), and each has one meaning for every verb.

use std::time::Duration;

use berth_api::address::{DEFAULT_ADDRESS, DEFAULT_INIT_ADDRESS};
use berth_api::keys::DEFAULT_NAMESPACE;

/// berthctl's global flags.
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// berthd's socket (`unix:///path` or a path); on a QEMU host, the bridged virtio-serial socket.
    #[arg(long, short = 'a', global = true, env = "BERTH_ADDRESS", default_value = DEFAULT_ADDRESS)]
    pub address: String,
    /// Namespace of the storage verbs (like ctr's `-n`).
    #[arg(long, short = 'n', global = true, env = "BERTH_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// berth-init's control API socket, for the `system` verbs.
    #[arg(long, global = true, env = "BERTH_INIT_ADDRESS", default_value = DEFAULT_INIT_ADDRESS)]
    pub init_address: String,
    /// Seconds to wait for berthd's answer.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
}

impl Globals {
    /// How long one call (and connecting) may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use crate::Args;

    /// Every command (groups, verbs) has exactly one namespace flag: the global one. Before,
    /// `snapshots` had a `-n` of its own, so `berthctl -n x snapshots ls` listed the default
    /// namespace and `berthctl snapshots ls -n x` was refused.
    #[test]
    fn one_global_namespace_flag_in_every_command() {
        let mut root = Args::command();
        root.build();
        fn walk(cmd: &clap::Command, path: &str, bad: &mut Vec<String>) {
            if cmd.get_name() == "help" {
                return; // clap's `help` subcommands take no flags
            }
            let flags: Vec<&clap::Arg> = cmd
                .get_arguments()
                .filter(|a| a.get_short() == Some('n') || a.get_long() == Some("namespace"))
                .collect();
            let one_global =
                matches!(flags[..], [f] if f.get_id() == "namespace" && f.is_global_set());
            if !one_global {
                bad.push(format!(
                    "{path}: {} namespace flag(s), global: {}",
                    flags.len(),
                    flags.iter().all(|f| f.is_global_set())
                ));
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), bad);
            }
        }
        let mut bad = Vec::new();
        walk(&root, "berthctl", &mut bad);
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn the_namespace_flag_counts_wherever_it_stands() {
        for line in [
            "berthctl -n x snapshots ls",
            "berthctl snapshots -n x ls",
            "berthctl snapshots ls -n x",
            "berthctl snapshots --namespace x tree",
            "berthctl -n x images ls",
            "berthctl images ls -n x",
            "berthctl tasks ls -n x",
            "berthctl run -n x busybox true",
        ] {
            let args =
                Args::try_parse_from(line.split(' ')).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(args.globals.namespace, "x", "{line}");
        }
    }
}
