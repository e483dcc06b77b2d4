//! Every berthctl verb, one module per verb, grouped like `ctr`'s `cmd/ctr/commands/<group>/`:
//! a group's `mod.rs` holds its clap subcommand enum and dispatch, each `<verb>.rs` the verb's
//! arguments and its `run`. Verbs get the global flags as [`Globals`](crate::globals::Globals),
//! connect through [`crate::connect`], print through [`crate::output`] and fail with
//! [`crate::error::Error`].
//!
//! Also here: the value parsers several verbs share (labels, durations), and the list of
//! snapshotters every `--snapshotter` help names.

/// The snapshotters berthd has, for the help of every `--snapshotter` flag (a literal, for
/// `concat!`): `overlayfs` (the default), `native` (plain copies), `zfs` (where a pool is
/// configured). See `berthctl plugins ls -f type==io.containerd.snapshotter.v1` for a node's own.
macro_rules! snapshotters {
    () => {
        "`overlayfs`, `native`, `zfs`"
    };
}

pub mod config;
pub mod containers;
pub mod content;
pub mod events;
pub mod gc;
pub mod hosts;
pub mod images;
pub mod leases;
pub mod namespaces;
pub mod node;
pub mod pki;
pub mod plugins;
mod process;
pub mod run;
pub mod snapshots;
pub mod system;
pub mod tasks;
pub mod version;

use std::time::Duration;

use crate::error::Error;

/// `key=value` labels from the command line (`-l`, repeatable).
fn parse_labels(labels: &[String]) -> Result<Vec<(String, String)>, Error> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Error::Usage(format!("--label {l:?}: expected key=value"))),
        })
        .collect()
}

/// A duration like `90s`, `10m`, `2h`, `1d` or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, Error> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| {
        Error::Usage(format!(
            "duration {s:?}: expected a number with s, m, h or d"
        ))
    })?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => {
            return Err(Error::Usage(format!(
                "duration {s:?}: unknown unit {unit:?} (use s, m, h or d)"
            )))
        }
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_labels() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2w")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_duration("h").is_err());
        assert_eq!(
            parse_labels(&["a=b=c".into()]).unwrap(),
            vec![("a".into(), "b=c".into())]
        );
        assert!(parse_labels(&["=x".into()]).is_err());
    }

    /// Every `--snapshotter` flag's help names every snapshotter (`snapshots -s` once left
    /// out `zfs`, the others named none).
    #[test]
    fn every_snapshotter_flag_names_every_snapshotter() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, seen: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                if a.get_long() == Some("snapshotter") {
                    let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                    assert!(help.contains(snapshotters!()), "{path}: {help}");
                    seen.push(path.to_string());
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), seen);
            }
        }
        let mut seen = Vec::new();
        walk(&crate::Args::command(), "berthctl", &mut seen);
        assert_eq!(
            seen,
            [
                "berthctl images pull",
                "berthctl images import",
                "berthctl images mount",
                "berthctl snapshots",
                "berthctl run"
            ]
        );
    }
}
