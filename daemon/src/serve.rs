//! berthd: loads the configuration, prepares its directories, registers plugins and serves the
//! ttrpc API on a root-only unix socket until SIGTERM/SIGINT. SIGHUP reloads the configuration.

use std::{
    ffi::OsString,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};
use tracing_subscriber::{filter::LevelFilter, reload, Registry as Subscriber};

use berth_api::proto::{
    config_ttrpc, containers_ttrpc, content_ttrpc, events_ttrpc, gc_ttrpc, images_ttrpc,
    introspection_ttrpc, leases_ttrpc, namespaces_ttrpc, pull_ttrpc, registry_ttrpc,
    snapshots_ttrpc, tasks_ttrpc, transfer_ttrpc, version_ttrpc,
};
use berth_engine::config::{Config, ConfigError, LogLevel, DEFAULT_CONFIG_PATH};
use berth_engine::plugins::{Registry, Status};
use berth_engine::store::Store;

use crate::services::{
    config::ConfigService, containers::ContainersService, content::ContentService,
    events::EventsService, gc::GcService, images::ImagesService,
    introspection::IntrospectionService, leases::LeasesService, namespaces::NamespacesService,
    pull::PullService, registry::RegistryService, snapshots::SnapshotsService, tasks::TasksService,
    transfer::TransferService, version::VersionService,
};

pub use berth_api::EXIT_CONFIG;

/// berthd command line.
#[derive(Debug, Parser)]
#[command(name = "berthd", version, about = "berth's container engine daemon")]
struct Args {
    /// Configuration file (default /etc/berth/berthd.toml; built-in defaults when absent).
    #[arg(long, short = 'c', value_name = "PATH")]
    config: Option<PathBuf>,
    /// Overrides `[ttrpc] address`.
    #[arg(long, short = 'a', value_name = "PATH")]
    address: Option<String>,
    /// Overrides `[debug] level`.
    #[arg(long, short = 'l', value_name = "LEVEL")]
    log_level: Option<String>,
    /// Check the configuration (and `--check-hosts` directories) and exit: 0, or 78 with the
    /// first problem. Serves nothing.
    #[arg(long)]
    check_config: bool,
    /// With `--check-config`: read the imported file LIVE from CANDIDATE instead (an empty
    /// CANDIDATE leaves LIVE out).
    #[arg(
        long = "override",
        value_name = "LIVE=CANDIDATE",
        requires = "check_config"
    )]
    overrides: Vec<String>,
    /// With `--check-config`: a registry host directory (`certs.d/<host>`) to check.
    #[arg(long, value_name = "DIR", requires = "check_config")]
    check_hosts: Vec<PathBuf>,
}

/// Errors that stop berthd from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--log-level {0:?}: expected one of trace, debug, info, warn, error")]
    BadLogLevel(String),
    #[error("cannot create {what} directory {path}: {source}")]
    Dir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another berthd is already serving {0}")]
    InUse(PathBuf),
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ttrpc server: {0}")]
    Server(#[source] ttrpc::Error),
    #[error("storage: {}", berth_api::errdefs::chain(.0))]
    Storage(Box<berth_engine::store::OpenError>),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Registry(#[from] berth_engine::remotes::config::RegistryConfigError),
    #[error(transparent)]
    Preload(#[from] berth_engine::preload::PreloadConfigError),
    #[error(transparent)]
    Boot(#[from] berth_engine::tasks::boot_containers::BootConfigError),
    #[error(transparent)]
    Runtimes(#[from] berth_engine::tasks::runtimes::RuntimesConfigError),
}

fn level_filter(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Trace => LevelFilter::TRACE,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    }
}

/// Which file to read: the one given, else the default when it exists, else none.
fn config_path(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG_PATH);
        p.exists().then_some(p)
    })
}

fn load(args: &Args) -> Result<Config, DaemonError> {
    let mut cfg = match config_path(args.config.clone()) {
        Some(p) => Config::load(&p)?,
        None => Config::default(),
    };
    if let Some(a) = &args.address {
        cfg.ttrpc.address = a.clone();
    }
    if let Some(l) = &args.log_level {
        cfg.debug.level = serde_json::from_value(serde_json::Value::String(l.clone()))
            .map_err(|_| DaemonError::BadLogLevel(l.clone()))?;
    }
    Ok(cfg)
}

/// Runs berthd with `args` (argv including argv[0]); returns the process exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let args = match Args::try_parse_from(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // Until serve() installs its handler, a SIGHUP (a reload request) is ignored rather than
    // fatal; the handler replaces this disposition, and exec resets handlers for children.
    // SAFETY: SIG_IGN installs no handler code, and no other thread exists yet.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGHUP,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
    if args.check_config {
        return match crate::check::check(
            config_path(args.config.clone()),
            &args.overrides,
            &args.check_hosts,
        ) {
            Ok(line) => {
                println!("{line}");
                0
            }
            Err(e) => {
                eprintln!("berthd: error: {e}");
                EXIT_CONFIG
            }
        };
    }
    // One line on stderr and a non-zero exit: init shows it on the console and stops
    // restarting a berthd that cannot start.
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berthd: error: {e}");
            return EXIT_CONFIG;
        }
    };
    let (filter, handle) = reload::Layer::new(level_filter(cfg.debug.level));
    use tracing_subscriber::prelude::*;
    let _ = Subscriber::default()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .without_time()
                .with_ansi(false),
        )
        .try_init();

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: error: {}", DaemonError::Runtime(e));
            return 1;
        }
    };
    match rt.block_on(serve(cfg, args, handle)) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e}");
            eprintln!("berthd: error: {e}");
            match &e {
                // Restarting cannot fix a newer schema or a bad GC setting: stop the retries.
                DaemonError::Storage(s) if s.is_permanent() => EXIT_CONFIG,
                DaemonError::Registry(_) | DaemonError::Preload(_) | DaemonError::Runtimes(_) => {
                    EXIT_CONFIG
                }
                DaemonError::Boot(_) => EXIT_CONFIG,
                _ => 1,
            }
        }
    }
}

fn make_dir(what: &'static str, path: &Path, mode: u32) -> Result<(), DaemonError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|source| DaemonError::Dir {
            what,
            path: path.to_path_buf(),
            source,
        })
}

/// Binds the API socket with mode 0600, replacing a stale socket file but never a live one.
fn bind(path: &Path, uid: u32, gid: u32) -> Result<tokio::net::UnixListener, DaemonError> {
    let listen_err = |source| DaemonError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(listen_err)?;
    }
    if let Some(parent) = path.parent() {
        make_dir("socket", parent, 0o711)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(listen_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(listen_err)?;
    if uid != 0 || gid != 0 {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(listen_err)?;
    }
    Ok(listener)
}

fn registry(cfg: &Config) -> Registry {
    let mut r = Registry::default();
    let dirs = r.register("berth.internal.v1", "dirs", Status::Ok);
    dirs.exports
        .insert("root".into(), cfg.root.display().to_string());
    dirs.exports
        .insert("state".into(), cfg.state.display().to_string());
    r.register("berth.service.v1", "version", Status::Ok);
    r.register("berth.service.v1", "introspection", Status::Ok);
    r.register("berth.service.v1", "registry", Status::Ok);
    r.register("berth.service.v1", "config", Status::Ok);
    r.register("berth.service.v1", "containers", Status::Ok);
    r.register("berth.service.v1", "tasks", Status::Ok);
    r.register("berth.service.v1", "events", Status::Ok);
    r
}

async fn serve(
    cfg: Config,
    args: Args,
    log: reload::Handle<LevelFilter, Subscriber>,
) -> Result<(), DaemonError> {
    // Signal handlers first: a SIGHUP while berthd starts must not kill it.
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(DaemonError::Runtime)?;
    let registry_cfg =
        berth_engine::remotes::config::RegistryConfig::from_plugins(&cfg.plugins, &cfg.sources)?;
    for w in registry_cfg.warnings() {
        warn!("{w}");
    }
    let live_registry = berth_engine::remotes::config::LiveRegistry::new(registry_cfg);
    let preload = berth_engine::preload::PreloadConfig::from_plugins(&cfg.plugins, &cfg.sources)?;
    let runtimes =
        berth_engine::tasks::runtimes::Runtimes::from_plugins(&cfg.plugins, &cfg.sources)?;
    let boot =
        berth_engine::tasks::boot_containers::BootConfig::from_plugins(&cfg.plugins, &cfg.sources)?;
    make_dir("root", &cfg.root, 0o711)?;
    make_dir("state", &cfg.state, 0o711)?;
    let socket = cfg.socket_path();
    let listener = bind(&socket, cfg.ttrpc.uid, cfg.ttrpc.gid)?;
    let mut registry = registry(&cfg);
    // Snapshotters first: interrupted unpacks are cleaned up, then the storage reconciles its
    // snapshot records against them and its collector sweeps through them.
    let mut loaded = berth_engine::snapshots::set::load(&cfg.root, &mut registry);
    berth_engine::snapshots::zfs::register(&cfg.root, &cfg.plugins, &mut loaded, &mut registry);
    let snapshotters = Arc::new(loaded);
    for id in snapshotters.ids() {
        if let Some(sn) = snapshotters.lookup(&id) {
            let (removed, errors) = berth_engine::unpack::remove_leftovers(sn.as_ref());
            if !removed.is_empty() {
                warn!(snapshotter = %id, ?removed, "removed snapshots of interrupted unpacks");
            }
            for e in errors {
                error!(snapshotter = %id, "cannot remove a snapshot of an interrupted unpack: {e}");
            }
        }
    }
    let storage = match Store::open_with(&cfg.root, &cfg.plugins, snapshotters.clone()) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(DaemonError::Storage(Box::new(e)));
        }
    };
    storage.register_plugins(&mut registry);
    let registry = Arc::new(registry);
    let server = ttrpc::r#async::Server::new()
        .register_service(namespaces_ttrpc::create_namespaces(Arc::new(
            NamespacesService(storage.clone()),
        )))
        .register_service(images_ttrpc::create_images(Arc::new(ImagesService(
            storage.clone(),
        ))))
        .register_service(leases_ttrpc::create_leases(Arc::new(LeasesService(
            storage.clone(),
        ))))
        .register_service(content_ttrpc::create_content(Arc::new(ContentService(
            storage.clone(),
        ))))
        .register_service(gc_ttrpc::create_gc(Arc::new(GcService(storage.clone()))));
    let gc_task = crate::reload::GcTask::spawn(storage.clone(), cfg.root.clone());
    let reloader = Arc::new(crate::reload::Reloader::new(
        cfg.clone(),
        Box::new(move || load(&args).map_err(|e| e.to_string())),
        Box::new(move |l| {
            let _ = log.modify(|f| *f = level_filter(l));
        }),
        live_registry.clone(),
        Some(gc_task),
    ));
    let server = server
        .add_listener(listener.into())
        .register_service(version_ttrpc::create_version(Arc::new(VersionService)))
        .register_service(introspection_ttrpc::create_introspection(Arc::new(
            IntrospectionService { registry },
        )))
        .register_service(transfer_ttrpc::create_transfer(Arc::new(TransferService {
            storage: storage.clone(),
            snapshotters: snapshotters.clone(),
        })))
        .register_service(registry_ttrpc::create_registry(Arc::new(RegistryService(
            live_registry.clone(),
        ))))
        .register_service(config_ttrpc::create_config(Arc::new(ConfigService(
            reloader.clone(),
        ))))
        .register_service(pull_ttrpc::create_pull(Arc::new(PullService(Arc::new(
            berth_engine::remotes::pull::Puller {
                storage: storage.clone(),
                snapshotters: snapshotters.clone(),
                registry: live_registry,
                default_docker_config: cfg.root.join("registry").join("config.json"),
                client: Default::default(),
            },
        )))))
        .register_service(snapshots_ttrpc::create_snapshots(Arc::new(
            SnapshotsService {
                snapshotters: snapshotters.clone(),
            },
        )));
    // Containers and tasks: re-adopts the shims that outlived a previous berthd.
    let tasks = berth_engine::tasks::Tasks::open(
        storage.clone(),
        snapshotters.as_ref().clone(),
        &cfg.state,
    )
    .await;
    tasks.set_runtimes(runtimes);
    let boot_tasks = tasks.clone();
    let streams = tasks.clone();
    let mut server = server
        .register_service(containers_ttrpc::create_containers(Arc::new(
            ContainersService(tasks.clone()),
        )))
        .register_service(tasks_ttrpc::create_tasks(Arc::new(TasksService(
            tasks.clone(),
        ))))
        .register_service(events_ttrpc::create_events(Arc::new(EventsService(tasks))));
    server.start().await.map_err(DaemonError::Server)?;
    info!(
        version = berth_api::version::VERSION,
        address = %socket.display(),
        "berthd serving"
    );
    // Images shipped in the OS image: imported in the background, so a large archive never
    // delays readiness (init waits for Version to answer).
    {
        let (storage, snapshotters) = (storage.clone(), snapshotters.clone());
        tokio::task::spawn_blocking(move || {
            berth_engine::preload::run_logged(&storage, &snapshotters, &preload)
        });
    }
    // Boot containers: started (or re-adopted) once their images are there.
    berth_engine::tasks::boot_containers::spawn(boot_tasks, boot, &cfg.state);

    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { info!("SIGINT: shutting down"); break; }
            // SIGHUP reloads; a bad file is reported and the running config stays.
            _ = hup.recv() => reloader.reload_logged().await,
        }
    }
    reloader.shutdown().await;
    streams.stop_streams();
    server.shutdown().await.map_err(DaemonError::Server)?;
    snapshotters.close_all();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
