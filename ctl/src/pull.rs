//! `berthctl images pull`: the client side of the Pull service, with a progress bar per blob
//! (bytes, rate, endpoint) on a terminal, one plain line per state change otherwise,
//! `--quiet` for the image name only and `--format json` for the result as JSON.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::Args;

use berth_api::proto::pull as pb;
use berth_api::proto::pull_ttrpc::PullClient;
use crate::Format;
use berth_api::keys::NAMESPACE_KEYS;

/// `images pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image: `busybox`, `registry.local:5000/team/app:v1`, `…@sha256:…`.
    pub reference: String,
    /// Platform to select from an index (`os/arch[/variant]`, default linux/amd64).
    #[arg(long, default_value = "")]
    pub platform: String,
    /// Snapshotter to unpack into (default: berthd's default).
    #[arg(long, default_value = "")]
    pub snapshotter: String,
    /// Store content and the image record only.
    #[arg(long)]
    pub no_unpack: bool,
    /// Layers downloaded at once (default 3).
    #[arg(long, default_value_t = 0)]
    pub max_concurrent_downloads: u32,
    /// Output of the result.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only the image name.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Errors of `images pull`.
#[derive(Debug, thiserror::Error)]
pub enum PullCtlError {
    /// Connecting failed.
    #[error("cannot connect to berthd at {address}")]
    Connect {
        /// The socket.
        address: String,
        /// Why.
        #[source]
        source: ttrpc::Error,
    },
    /// The pull failed (berthd's message names each endpoint tried).
    #[error("pull {reference}: {}", describe(.source))]
    Call {
        /// The reference.
        reference: String,
        /// The error.
        source: ttrpc::Error,
    },
    /// berthd ended the stream without a result.
    #[error("pull {reference}: berthd ended the stream without a result")]
    NoResult {
        /// The reference.
        reference: String,
    },
}

fn describe(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// Bytes as KiB/MiB/GiB.
fn human(n: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Renders progress: bars on a terminal, lines otherwise, nothing with `--quiet`/json.
enum View {
    Silent,
    Lines {
        started: HashMap<String, (Instant, i64)>,
        last_state: HashMap<String, String>,
    },
    Bars {
        multi: indicatif::MultiProgress,
        bars: HashMap<String, indicatif::ProgressBar>,
    },
}

impl View {
    fn new(args: &PullArgs) -> Self {
        if args.quiet || args.format == Format::Json {
            View::Silent
        } else if std::io::stdout().is_terminal() {
            View::Bars {
                multi: indicatif::MultiProgress::new(),
                bars: HashMap::new(),
            }
        } else {
            View::Lines {
                started: HashMap::new(),
                last_state: HashMap::new(),
            }
        }
    }

    fn update(&mut self, p: &pb::BlobProgress) {
        let label = format!("{:<8} {}", p.kind, short(&p.digest));
        match self {
            View::Silent => {}
            View::Lines {
                started,
                last_state,
            } => {
                if last_state.get(&p.digest) == Some(&p.state) {
                    return;
                }
                last_state.insert(p.digest.clone(), p.state.clone());
                if p.state == "downloading" {
                    started.insert(p.digest.clone(), (Instant::now(), p.offset));
                }
                let mut line = format!("{label}  {:<11}", p.state);
                if p.state != "waiting" {
                    line.push_str(&format!(
                        "  {}/{}",
                        human(p.offset as f64),
                        human(p.size as f64)
                    ));
                }
                if p.state == "done" {
                    if let Some((t, from)) = started.get(&p.digest) {
                        let secs = t.elapsed().as_secs_f64().max(0.001);
                        line.push_str(&format!("  {}/s", human((p.offset - from) as f64 / secs)));
                    }
                }
                if !p.endpoint.is_empty() {
                    line.push_str(&format!("  from {}", p.endpoint));
                }
                println!("{line}");
            }
            View::Bars { multi, bars } => {
                let bar = bars.entry(p.digest.clone()).or_insert_with(|| {
                    let bar = multi.add(indicatif::ProgressBar::new(p.size.max(0) as u64));
                    let style = indicatif::ProgressStyle::with_template(
                        "{prefix} [{bar:25}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    bar.set_style(style);
                    bar.set_prefix(label.clone());
                    bar
                });
                bar.set_position(p.offset.max(0) as u64);
                let mut msg = p.state.clone();
                if !p.endpoint.is_empty() {
                    msg.push_str(&format!(" from {}", p.endpoint));
                }
                bar.set_message(msg);
                if p.state == "unpacked" || (p.kind != "layer" && p.state == "done") {
                    bar.finish();
                }
            }
        }
    }

    fn finish(&mut self) {
        if let View::Bars { bars, .. } = self {
            for b in bars.values() {
                if !b.is_finished() {
                    b.finish();
                }
            }
        }
    }
}

/// Runs `images pull` against berthd at `address`.
pub async fn pull(address: &str, namespace: &str, args: PullArgs) -> Result<(), PullCtlError> {
    let address = berth_api::client::normalize_address(address);
    let inner = ttrpc::r#async::Client::connect(&address)
        .await
        .map_err(|source| PullCtlError::Connect {
            address: address.clone(),
            source,
        })?;
    let client = PullClient::new(inner);
    let mut ctx = ttrpc::context::Context::default();
    ctx.add(NAMESPACE_KEYS[0].into(), namespace.to_string());
    let req = pb::PullRequest {
        reference: args.reference.clone(),
        platform: args.platform.clone(),
        snapshotter: args.snapshotter.clone(),
        no_unpack: args.no_unpack,
        max_concurrent_downloads: args.max_concurrent_downloads,
        ..Default::default()
    };
    let call = |source| PullCtlError::Call {
        reference: args.reference.clone(),
        source,
    };
    let started = Instant::now();
    let mut stream = client.pull(ctx, &req).await.map_err(call)?;
    let mut view = View::new(&args);
    let mut result = None;
    loop {
        match stream.recv().await {
            Ok(Some(ev)) => {
                if let Some(p) = ev.progress.as_ref() {
                    view.update(p);
                }
                if ev.done {
                    result = ev.result.into_option();
                }
            }
            Ok(None) => break,
            Err(e) => {
                view.finish();
                return Err(call(e));
            }
        }
    }
    view.finish();
    let r = result.ok_or_else(|| PullCtlError::NoResult {
        reference: args.reference.clone(),
    })?;
    if args.quiet {
        println!("{}", r.name);
    } else if args.format == Format::Json {
        let v = serde_json::json!({
            "name": r.name,
            "media_type": r.media_type,
            "digest": r.digest,
            "size": r.size,
            "chain_id": r.chain_id,
            "layers_fetched": r.layers_fetched,
            "layers_present": r.layers_present,
            "layers_applied": r.layers_applied,
            "layers_reused": r.layers_reused,
            "downloaded_bytes": r.downloaded_bytes,
            "millis": r.millis,
            "attempts": r.attempts,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("json of plain values")
        );
    } else {
        let secs = Duration::from_millis(r.millis.max(0) as u64).as_secs_f64();
        for a in r.attempts.iter().filter(|a| a.contains("failed")) {
            eprintln!("warning: {a}");
        }
        println!(
            "{}: {} ({} layers downloaded, {} present; {} in {:.2}s, {}/s)",
            r.name,
            r.digest,
            r.layers_fetched,
            r.layers_present,
            human(r.downloaded_bytes as f64),
            secs.max(started.elapsed().as_secs_f64().min(secs)),
            human(r.downloaded_bytes as f64 / secs.max(0.001)),
        );
        if !r.chain_id.is_empty() {
            println!(
                "unpacked: {} ({} layers applied, {} reused)",
                r.chain_id, r.layers_applied, r.layers_reused
            );
        }
    }
    Ok(())
}
