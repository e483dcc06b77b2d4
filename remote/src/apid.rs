//! `berth-apid`: the remote API listener as a process (an applet of the multi-call binary;
//! berth-init supervises it in phase 2). Reads one TOML file, listens, reloads credentials
//! and the deny list on SIGHUP, stops on SIGTERM/SIGINT.
//!
//! ```toml
//! listen = "0.0.0.0:7443"
//! ca = "/var/etc/berth/remote/ca.pem"      # fleet CA (client certificates chain to it)
//! cert = "/var/etc/berth/remote/node.pem"  # this node's certificate
//! key = "/var/etc/berth/remote/node.key"   # its key (0600)
//! berthd = "/run/berth/berthd.sock"
//! init = "/run/berth/init.sock"
//! deny_serials = ["5f3a…"]                  # revoked client certificates (hex)
//! [limits]                                  # defaults: docs/remote-api.md
//! idle_timeout_secs = 300
//! ```

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::config::{Backends, ConfigError, DenyList, Limits, ListenerConfig, Live, DEFAULT_PORT};
use crate::listener::{ListenError, Listener};
use crate::tls::{server_config, Credentials, TlsError};

/// Where the applet reads its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/berth/apid.toml";

#[derive(Debug, Parser)]
#[command(
    name = "berth-apid",
    about = "berth's remote API: mutual TLS, roles, ttrpc to berthd and init"
)]
struct Args {
    /// The configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Overrides `listen` of the file.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Check, do not listen: the file (or `--ca/--cert/--key`) loads, the key matches the
    /// certificate, the deny list and limits are valid. Exit 0, or 78 with the reason (berth-init
    /// runs this before it writes new credentials: `berthctl node config put remote/…`).
    #[arg(long)]
    check: bool,
    /// With `--check`: the CA certificate to check instead of the file's.
    #[arg(long, requires_all = ["check", "cert", "key"])]
    ca: Option<PathBuf>,
    /// With `--check`: the node certificate.
    #[arg(long, requires_all = ["check", "ca", "key"])]
    cert: Option<PathBuf>,
    /// With `--check`: its key.
    #[arg(long, requires_all = ["check", "ca", "cert"])]
    key: Option<PathBuf>,
}

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    #[serde(default)]
    berthd: Option<PathBuf>,
    #[serde(default)]
    init: Option<PathBuf>,
    #[serde(default)]
    deny_serials: Vec<String>,
    #[serde(default)]
    limits: FileLimits,
}

/// Limits in the file; absent ones keep their defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    handshake_timeout_secs: Option<u64>,
    idle_timeout_secs: Option<u64>,
    frame_timeout_secs: Option<u64>,
    max_connections: Option<usize>,
    max_handshakes: Option<usize>,
    max_streams: Option<usize>,
    max_frame: Option<u32>,
    request_budget: Option<u32>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))
}

/// Errors of the applet.
#[derive(Debug, thiserror::Error)]
pub enum ApidError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for it.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why (with line and key).
        #[source]
        source: toml::de::Error,
    },
    /// Bad limits or deny list.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Unusable credentials.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Cannot listen.
    #[error(transparent)]
    Listen(#[from] ListenError),
}

impl FileLimits {
    fn apply(&self) -> Limits {
        let d = Limits::default();
        let secs = |v: Option<u64>, dflt| v.map(std::time::Duration::from_secs).unwrap_or(dflt);
        Limits {
            handshake_timeout: secs(self.handshake_timeout_secs, d.handshake_timeout),
            idle_timeout: secs(self.idle_timeout_secs, d.idle_timeout),
            frame_timeout: secs(self.frame_timeout_secs, d.frame_timeout),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_handshakes: self.max_handshakes.unwrap_or(d.max_handshakes),
            max_streams: self.max_streams.unwrap_or(d.max_streams),
            max_frame: self.max_frame.unwrap_or(d.max_frame),
            request_budget: self.request_budget.unwrap_or(d.request_budget),
        }
    }
}

fn read(path: &Path) -> Result<File, ApidError> {
    let text = std::fs::read_to_string(path).map_err(|source| ApidError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ApidError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn live(file: &File) -> Result<Live, ApidError> {
    let creds = Credentials::load(&file.ca, &file.cert, &file.key)?;
    Ok(Live {
        tls: server_config(&creds)?,
        deny: DenyList::parse(file.deny_serials.iter().map(String::as_str))?,
    })
}

/// Raises the soft open-file limit to the hard one: each connection holds up to three
/// descriptors (the client, berthd, init).
fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

async fn serve(args: Args) -> Result<(), ApidError> {
    let file = read(&args.config)?;
    let limits = file.limits.apply();
    let cfg = ListenerConfig {
        listen: args.listen.unwrap_or(file.listen),
        backends: Backends {
            berthd: file
                .berthd
                .clone()
                .unwrap_or_else(|| Backends::default().berthd),
            init: file
                .init
                .clone()
                .unwrap_or_else(|| Backends::default().init),
        },
        limits,
    };
    let listener = Listener::bind(cfg, live(&file)?).await?;
    let handle = listener.handle();
    let term = async {
        let (Ok(mut t), Ok(mut i)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
    };
    let config = args.config.clone();
    let reloads = async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return std::future::pending().await;
        };
        while hup.recv().await.is_some() {
            // A bad file keeps what is in force.
            match read(&config).and_then(|f| live(&f)) {
                Ok(l) => {
                    info!(denied = l.deny.len(), "reloaded credentials and deny list");
                    handle.reload(l);
                }
                Err(e) => {
                    error!(error = %berth_api::errdefs::chain(&e), "reload refused; the configuration in force stays")
                }
            }
        }
    };
    tokio::select! {
        _ = listener.serve(term) => {}
        _ = reloads => {}
    }
    Ok(())
}

/// `--check`: the credentials (and the file, unless they are given) as the listener would
/// load them. Never prints key material.
fn check(args: &Args) -> Result<String, ApidError> {
    let creds = match (&args.ca, &args.cert, &args.key) {
        (Some(ca), Some(cert), Some(key)) => Credentials::load(ca, cert, key)?,
        _ => {
            let file = read(&args.config)?;
            file.limits.apply().validate()?;
            live(&file)?;
            Credentials::load(&file.ca, &file.cert, &file.key)?
        }
    };
    server_config(&creds)?;
    let id = creds
        .chain
        .first()
        .and_then(|c| crate::identity::Identity::from_der(c.as_ref()).ok())
        .map(|i| {
            format!(
                "certificate {} (serial {})",
                i.common_name,
                i.serial.as_str()
            )
        })
        .unwrap_or_else(|| "certificate".into());
    Ok(format!(
        "ok: {id}, its key and {} CA certificate(s) load",
        creds.ca.len()
    ))
}

/// Runs the applet with `args` (argv including argv[0]); returns the exit code
/// ([`berth_api::EXIT_CONFIG`] for a configuration that cannot work: restarting cannot fix a
/// file).
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .with_ansi(false)
        .try_init();
    if args.check {
        return match check(&args) {
            Ok(line) => {
                println!("{line}");
                0
            }
            Err(e) => {
                eprintln!("berth-apid: error: {}", berth_api::errdefs::chain(&e));
                berth_api::EXIT_CONFIG
            }
        };
    }
    raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-apid: error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-apid: error: {}", berth_api::errdefs::chain(&e));
            match e {
                ApidError::Listen(ListenError::Bind { .. }) => 1,
                _ => berth_api::EXIT_CONFIG,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_takes_the_defaults_and_unknown_keys_are_refused() {
        let f: File = toml::from_str("ca = \"a\"\ncert = \"b\"\nkey = \"c\"\n").unwrap();
        assert_eq!(f.listen.port(), DEFAULT_PORT);
        assert_eq!(f.limits.apply(), Limits::default());
        let f: File =
            toml::from_str("ca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[limits]\nmax_streams = 4\n")
                .unwrap();
        assert_eq!(f.limits.apply().max_streams, 4);
        assert!(
            toml::from_str::<File>("ca = \"a\"\ncert = \"b\"\nkey = \"c\"\nnope = 1\n").is_err()
        );
    }
}
