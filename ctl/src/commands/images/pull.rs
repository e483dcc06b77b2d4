//! `berthctl images pull REF`: pulls an image through berthd's configured mirrors and unpacks
//! it (Pull service, a server stream of progress ending in the result). Progress shows as a
//! bar per blob (bytes, rate, endpoint) on a terminal and as one plain line per state change
//! otherwise; `-q` prints the image name only and `--format json` the result as JSON.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use berth_api::proto::pull as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{human_bytes, print_json, Format};

/// `images pull` arguments.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image: `busybox`, `registry.local:5000/team/app:v1`, `…@sha256:…`.
    reference: String,
    /// Platform to select from an index (`os/arch[/variant]`, default linux/amd64).
    #[arg(long, default_value = "")]
    platform: String,
    #[arg(long, default_value = "", help = concat!(
        "Snapshotter to unpack into (", snapshotters!(), "; default: berthd's default)"
    ))]
    snapshotter: String,
    /// Store content and the image record only.
    #[arg(long)]
    no_unpack: bool,
    /// Layers downloaded at once (default 3).
    #[arg(long, default_value_t = 0)]
    max_concurrent_downloads: u32,
    /// Output of the result.
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
    /// Print only the image name.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Pulls, showing progress, then prints the result.
pub async fn run(g: &Globals, args: PullArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::PullRequest {
        reference: args.reference.clone(),
        platform: args.platform.clone(),
        snapshotter: args.snapshotter.clone(),
        no_unpack: args.no_unpack,
        max_concurrent_downloads: args.max_concurrent_downloads,
        ..Default::default()
    };
    let context = format!("pull {}", args.reference);
    let started = Instant::now();
    let mut stream = berthd
        .pull()
        .pull(berthd.stream_ctx(), &req)
        .await
        .map_err(Error::call(&context))?;
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
                return Err(Error::call(context)(e));
            }
        }
    }
    view.finish();
    let r = result.ok_or(Error::NoResult { context })?;
    if args.quiet {
        println!("{}", r.name);
    } else if args.format == Format::Json {
        print_json(&serde_json::json!({
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
        }));
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
            human_bytes(r.downloaded_bytes as f64),
            secs.max(started.elapsed().as_secs_f64().min(secs)),
            human_bytes(r.downloaded_bytes as f64 / secs.max(0.001)),
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

/// The first 12 hex digits of a digest.
fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
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
                        human_bytes(p.offset as f64),
                        human_bytes(p.size as f64)
                    ));
                }
                if p.state == "done" {
                    if let Some((t, from)) = started.get(&p.digest) {
                        let secs = t.elapsed().as_secs_f64().max(0.001);
                        let rate = (p.offset - from) as f64 / secs;
                        line.push_str(&format!("  {}/s", human_bytes(rate)));
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
