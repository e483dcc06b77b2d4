//! The global flags — berthd's address, the namespace, berth-init's address, the timeout, and
//! the remote API's (`--remote`, `--ca/--cert/--key`, `--context`, `--nodes`) — read in this
//! one place and handed to every verb as [`Globals`].
//!
//! They are `global`, so they may stand anywhere on the command line (`berthctl -n x images
//! ls` and `berthctl images ls -n x` are the same), and each has one meaning for every verb.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use berth_api::address::{DEFAULT_ADDRESS, DEFAULT_INIT_ADDRESS};
use berth_api::keys::DEFAULT_NAMESPACE;

/// berthctl's global flags, under a heading of their own in every verb's help (mixed in with
/// a verb's own options they buried them).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Global options")]
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
    /// A node's remote API instead of the local sockets: `[NAME=]HOST[:PORT]` (port 7443; the
    /// node's certificate must name NAME, else HOST). See docs/remote-api.md.
    #[arg(
        long,
        global = true,
        env = "BERTH_REMOTE",
        value_name = "[NAME=]HOST[:PORT]",
        conflicts_with = "remote_nodes"
    )]
    pub remote: Option<String>,
    /// The fleet CA certificate (PEM) the node's certificate must chain to.
    #[arg(
        long,
        id = "tls_ca",
        global = true,
        env = "BERTH_CA",
        value_name = "FILE"
    )]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM; its O= is the role).
    #[arg(
        long,
        id = "tls_cert",
        global = true,
        env = "BERTH_CERT",
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,
    /// This client's key (PEM).
    #[arg(
        long,
        id = "tls_key",
        global = true,
        env = "BERTH_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// A context of the contexts file ($BERTHCONFIG, else ~/.config/berth/config.toml).
    #[arg(
        long,
        id = "remote_context",
        global = true,
        env = "BERTH_CONTEXT",
        value_name = "NAME"
    )]
    pub context: Option<String>,
    /// Run on several nodes, each line prefixed with its node; exit 1 if any failed. Names of
    /// the context's nodes or `[NAME=]HOST[:PORT]`, comma-separated (`*`: all of the context).
    /// Read verbs, `system upgrade` and `system reboot` only.
    #[arg(
        long,
        id = "remote_nodes",
        global = true,
        value_delimiter = ',',
        value_name = "NODES"
    )]
    pub nodes: Vec<String>,
    /// Whether `--address` or `--init-address` was given (flag or environment): then a
    /// current context does not apply.
    #[arg(skip)]
    pub address_explicit: bool,
    /// The node of `--remote` or the context, once resolved (None: local).
    #[arg(skip)]
    target: OnceLock<Option<Arc<crate::remote::Remote>>>,
}

impl Globals {
    /// How long one call (and connecting) may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The node the calls go to, or None for the local sockets (resolved once; see
    /// [`crate::remote`]).
    pub fn remote(&self) -> Result<Option<Arc<crate::remote::Remote>>, crate::error::Error> {
        if let Some(t) = self.target.get() {
            return Ok(t.clone());
        }
        let t = match crate::remote::resolve(self, self.address_explicit)? {
            crate::remote::Target::Local => None,
            crate::remote::Target::Remote(r) => Some(r),
            crate::remote::Target::FanOut(_) => {
                return Err(crate::error::Error::Usage(
                    "--nodes runs through the fan-out, not one connection".into(),
                ))
            }
        };
        Ok(self.target.get_or_init(|| t).clone())
    }

    /// The node resolved so far, without resolving (for error messages).
    pub fn resolved_remote(&self) -> Option<Arc<crate::remote::Remote>> {
        self.target.get().cloned().flatten()
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

    /// A verb's argument with the id of a global flag would share its value slot: clap then
    /// panics at run time (`snapshots prepare KEY` against a global `--key` once did).
    #[test]
    fn no_verb_argument_shares_an_id_with_a_global_flag() {
        let mut root = Args::command();
        root.build();
        let globals: Vec<String> = root
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().to_string())
            .collect();
        fn walk(cmd: &clap::Command, path: &str, globals: &[String], bad: &mut Vec<String>) {
            for a in cmd.get_arguments().filter(|a| !a.is_global_set()) {
                if globals.iter().any(|g| g == a.get_id().as_str()) {
                    bad.push(format!("{path}: {}", a.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), globals, bad);
            }
        }
        let mut bad = Vec::new();
        walk(&root, "berthctl", &globals, &mut bad);
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
