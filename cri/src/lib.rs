//! berth-cri: the Kubernetes CRI v1 adapter of berth.
//!
//! kubelet speaks only gRPC CRI, and berthd stays ttrpc-only; berth-cri sits between them,
//! an applet of berth's multi-call binary serving CRI `RuntimeService` and `ImageService` on
//! a unix socket (`/run/berth/cri.sock`) and calling berthd in its `k8s.io` namespace.
//!
//! - [`images`]: the ImageService over berthd's image records and pulls;
//! - [`sandbox`]: pod sandboxes — berthd containers running [`pause`], the `berth-pause`
//!   applet, in namespaces pinned by [`netns`] and wired by [`cni`];
//! - [`container`]: containers — berthd containers made from images with a spec berth-cri
//!   builds, joining their sandbox's namespaces; logs in kubelet's format, stats, ExecSync;
//! - [`runtime_info`]: Version, Status, RuntimeConfig;
//! - [`service`]: the thin gRPC adapters; [`server`]: the socket and the wiring;
//! - [`berthd`]: the ttrpc client; [`labels`]: the state berth-cri keeps in berthd (all of
//!   it); [`config`]: the `[cri]` settings; [`error`]: errors and their gRPC codes.
//!
//! docs/kubernetes.md describes the mapping and what is not implemented yet.

pub mod berthd;
pub mod cni;
pub mod config;
pub mod container;
pub mod error;
pub mod images;
pub mod labels;
pub mod netns;
pub mod pause;
pub mod runtime_info;
pub mod sandbox;
pub mod server;
pub mod service;

/// The CRI v1 messages and services generated from `proto/api.proto` (k8s.io/cri-api
/// v0.37.2).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("runtime.v1");
}

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

/// The applet's name.
pub const APPLET: &str = "berth-cri";

/// Now, in unix nanoseconds.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// berth-cri's command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth-cri",
    version,
    about = "Kubernetes CRI v1 for berth: gRPC for kubelet, ttrpc to berthd"
)]
struct Args {
    /// The configuration file (its `[cri]` table); a missing default file means defaults.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// The CRI socket, overriding `cri.address`.
    #[arg(long)]
    address: Option<PathBuf>,
    /// berthd's socket, overriding `cri.berthd_address`.
    #[arg(long)]
    berthd_address: Option<String>,
    /// Log filter (tracing's env-filter syntax); RUST_LOG wins when set.
    #[arg(long, default_value = "info")]
    log: String,
}

/// The applet's entry: argv in, exit code out (78 for a bad configuration).
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let a = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&a.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let (path, required) = match &a.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(config::DEFAULT_CONFIG_PATH), false),
    };
    let mut cfg = match config::Config::load(&path, required) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {}", berth_api::errdefs::chain(&e));
            return berth_api::EXIT_CONFIG;
        }
    };
    if let Some(p) = a.address {
        cfg.address = p;
    }
    if let Some(b) = a.berthd_address {
        cfg.berthd_address = b;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(server::serve(cfg)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{}", berth_api::errdefs::chain(&e));
            1
        }
    }
}
