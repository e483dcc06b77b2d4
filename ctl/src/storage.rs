//! berthctl's storage verbs: `namespaces`, `content`, `images`, `leases`, `gc`, one module
//! per verb group. Each talks to berthd through [`StorageClient`] in the namespace given by
//! `-n/--namespace` (env `BERTH_NAMESPACE`, default `default`).
//!
//! Listings print a table for people, `--format json` for scripts, `-q` for ids only.

mod content;
mod gc;
mod images;
mod leases;
mod namespaces;
mod transfer;

use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};

use berth_api::client::ClientError;
use berth_api::client::StorageClient;

/// The storage verb groups, flattened into berthctl's top-level commands.
#[derive(Debug, Subcommand)]
pub enum StorageCommand {
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
}

/// Errors of the storage verbs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A bad command-line value.
    #[error("{0}")]
    Usage(String),
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Output format of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Options shared by listings.
#[derive(Debug, Args)]
pub struct ListOpts {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Print only ids.
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl ListOpts {
    /// Prints `ids` (quiet), `json` or the table.
    fn print(
        &self,
        ids: Vec<String>,
        json: serde_json::Value,
        header: &[&str],
        rows: Vec<Vec<String>>,
    ) {
        if self.quiet {
            for id in ids {
                println!("{id}");
            }
        } else if self.format == Format::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(&json).expect("json of plain values")
            );
        } else {
            print!("{}", super::table(header, &rows));
        }
    }
}

/// Runs one storage verb against berthd at `address`.
pub async fn run(
    address: &str,
    timeout: Duration,
    namespace: &str,
    command: StorageCommand,
) -> Result<(), Error> {
    // The Transfer verbs have their own client.
    let command = match command {
        StorageCommand::Images(images::Command::Pull(a)) => {
            return crate::pull::pull(address, namespace, a)
                .await
                .map_err(|e| Error::Usage(e.to_string()))
        }
        StorageCommand::Images(images::Command::Import(a)) => {
            return transfer::import(address, namespace, a).await
        }
        StorageCommand::Images(images::Command::Export(a)) => {
            return transfer::export(address, namespace, a).await
        }
        StorageCommand::Images(images::Command::Mount(a)) => {
            return transfer::mount(address, namespace, a).await
        }
        StorageCommand::Images(images::Command::Unmount(a)) => {
            return transfer::unmount(address, timeout, namespace, a).await
        }
        other => other,
    };
    let client = StorageClient::connect(address, timeout, namespace).await?;
    match command {
        StorageCommand::Namespaces(c) => namespaces::run(&client, c).await,
        StorageCommand::Content(c) => content::run(&client, c).await,
        StorageCommand::Images(c) => images::run(&client, c).await,
        StorageCommand::Leases(c) => leases::run(&client, c).await,
        StorageCommand::Gc(a) => gc::run(&client, a).await,
    }
}

/// `key=value` labels from the command line.
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

/// Sizes for people: `512 B`, `1.5 KiB`, `2.0 MiB`.
fn human_size(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// How long ago unix-nanoseconds `t` was: `12s`, `5m`, `3h`, `2d` (`-` when unset).
fn age(t: i64) -> String {
    let Some(t) = berth_api::time::from_nanos(t) else {
        return "-".into();
    };
    let s = SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Labels as `k=v,k=v`.
fn labels_text<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut v: Vec<String> = labels
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    v.sort();
    v.join(",")
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
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
