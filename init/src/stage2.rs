//! Stage 2: PID 1 on the real (read-only) root. Brings the node up and runs the main loop.
//!
//! Order: configuration → pseudo filesystems → modules → API bridge → storage → sysctls →
//! network (`lo`, DHCP, static; `docs/networking.md`) → time (SNTP) → berthd and
//! `[[service]]`s → main loop (signals, reaping, supervision) → orderly shutdown.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;

use crate::cmdline;
use crate::config::{self, Config};
use crate::console::{Console, Level};
use crate::events;
use crate::modules::{ModuleIndex, Outcome};
use crate::mounts::{self, Mounted};
use crate::power::{self, FatalPolicy, PowerAction};
use crate::reaper;
use crate::supervisor::{Backoff, Event, Readiness, ServiceSpec, Supervisor};

/// Longest the main loop sleeps without a reason (a safety net for missed wake-ups).
const MAX_SLEEP: Duration = Duration::from_secs(5);

/// Brings the node up from `config_path` and supervises it until a power signal.
/// Never returns. `fatal` is updated from the configuration as soon as it is known, for
/// the caller's panic handling.
pub fn run(config_path: &Path, fatal: &mut FatalPolicy) -> ! {
    // Block signals before any thread exists so every thread inherits the mask.
    let signals = reaper::block_and_open();
    let timeline = crate::control::Timeline::new();
    // Ctrl-Alt-Del sends SIGINT to init instead of rebooting on the spot.
    let _ = nix::sys::reboot::set_cad_enabled(false);

    let mount_results = timeline.time("mounts", || mounts::mount_table(mounts::STAGE2_MOUNTS));
    mounts::create_dev_symlinks();

    let (cmdline, cmdline_error) = match cmdline::read(Path::new(cmdline::PROC_CMDLINE)) {
        Ok(text) => (text, None),
        Err(err) => (String::new(), Some(err)),
    };
    let loaded = timeline.time("config", || Config::load_layers(&[config_path], &cmdline));
    let config_url = loaded.config_url.clone();
    let config = loaded.config;
    let logger = crate::log::Logger::install(&config.log);
    let console = Console::new(config.console.level).with_log(logger);
    *fatal = FatalPolicy {
        action: config.shutdown.on_fatal.into(),
        timeout: Duration::from_secs(config.shutdown.timeout_secs),
        console,
    };
    for err in &loaded.file_errors {
        console.error(&format!("{err}; {}", err.consequence()));
    }
    if let Some(err) = cmdline_error {
        console.warn(&format!(
            "cannot read {}: {err}; berth. arguments not applied",
            cmdline::PROC_CMDLINE
        ));
    }
    for err in &loaded.cmdline_errors {
        console.error(&format!("{err}; ignored"));
    }
    timeline.time("logging", || crate::log::start_inputs(logger, console));
    let control: &'static crate::control::Control = Box::leak(Box::new(
        crate::control::Control::new(timeline, logger, console),
    ));
    control.timeline.attach(console);
    for (spec, result) in mount_results {
        match result {
            Ok(Mounted::Mounted) => {
                console.debug(&format!("mounted {} on {}", spec.fstype, spec.target))
            }
            Ok(Mounted::AlreadyMounted | Mounted::NotApplicable) => {}
            Err(err) => console.warn(&err.to_string()),
        }
    }
    // The cgroup tree, with init moved into init.scope before it starts any thread.
    let cgroups = crate::system::setup_cgroups(console);
    let signals = match signals {
        Ok(fd) => Some(fd),
        Err(err) => {
            console.error(&format!("{err}; signals will not be handled"));
            None
        }
    };

    let index = match ModuleIndex::for_running_kernel(Path::new("/")) {
        Ok(index) => {
            crate::modules::report_issues(&index, console);
            Some(index)
        }
        Err(err) => {
            console.warn(&format!("modules: {err}"));
            None
        }
    };
    // Modules load on their own thread (configured list, then coldplug) while lo and the
    // bridge come up; the storage stage waits for them (block drivers), then berthd starts.
    // The uevent socket opens first so no device slips between the coldplug scan and hotplug.
    let uevents = match crate::coldplug::open_uevent_socket() {
        Ok(fd) => Some(fd),
        Err(err) => {
            console.warn(&format!(
                "hotplug: cannot open the uevent socket: {err}; hot-plugged devices get no drivers"
            ));
            None
        }
    };
    let modules_done = std::sync::Arc::new(Latch::default());
    {
        let config = config.clone();
        let done = modules_done.clone();
        let stage = control.timeline.begin("modules");
        let spawned = std::thread::Builder::new()
            .name("modules".into())
            .spawn(move || {
                let started = Instant::now();
                load_modules(&config, index.as_ref(), console);
                if let Some(index) = index {
                    let dir = crate::modules::release_dir(Path::new("/"));
                    let aliases = crate::coldplug::AliasTable::read(&dir);
                    let (devices, results) =
                        crate::coldplug::coldplug(&index, &aliases, Path::new("/sys/devices"));
                    crate::coldplug::report("coldplug", &results, console);
                    console.info(&format!(
                        "modules: done in {} ms ({devices} device aliases scanned)",
                        started.elapsed().as_millis()
                    ));
                    control.timeline.end(stage);
                    done.set();
                    if config.shutdown.power_button {
                        crate::power_button::spawn(Some(&index), console);
                    }
                    mount_late(console);
                    if let Some(fd) = uevents {
                        crate::coldplug::hotplug_loop(fd, index, aliases, console);
                    }
                } else {
                    control.timeline.end(stage);
                    done.set();
                }
            });
        if let Err(err) = spawned {
            console.warn(&format!("modules: cannot start the loader thread: {err}"));
            modules_done.set();
        }
    }
    let socket_dir = Path::new(crate::bridge::socket_path(&config.berthd.address))
        .parent()
        .map(Path::to_path_buf);
    if let Some(dir) = socket_dir {
        let _ = std::fs::create_dir_all(dir);
    }
    if !config.bridge.port.is_empty() {
        crate::bridge::spawn(
            config.bridge.port.clone(),
            config.berthd.address.clone(),
            Duration::from_secs(config.bridge.wait_secs),
            console,
        );
        let wait = Duration::from_secs(config.bridge.wait_secs);
        crate::bridge::spawn(
            crate::control::BRIDGE_PORT.into(),
            crate::control::SOCKET.into(),
            wait,
            console,
        );
    }
    control
        .timeline
        .time("control api", || crate::control::spawn(control));

    let (tx, rx) = match events::channel() {
        Ok(pair) => pair,
        Err(err) => {
            console.error(&format!("{err}; cannot supervise services; powering off"));
            power::finish(fatal.action, console)
        }
    };
    // Storage stage: the state partition (or a tmpfs) on /var, then the node file on it.
    let storage_stage = control.timeline.begin("storage");
    if !modules_done.wait(MODULES_TIMEOUT) {
        console.warn(&format!(
            "modules: still loading after {} s; looking for the state disk anyway",
            MODULES_TIMEOUT.as_secs()
        ));
    }
    let storage_started = Instant::now();
    let _storage = crate::state_disk::setup(&config.storage, console);
    // UEFI: firmware/loader/stub report, the ESP, blessing or rolling back a trial slot.
    control.set_slots(crate::slots::start(&config.boot, control.logger, console));
    console.debug(&format!(
        "storage: done in {} ms",
        storage_started.elapsed().as_millis()
    ));
    let config = with_node_file(config_path, &cmdline, config, console);
    // As soon as the state disk (the recorded time) and the node file (credentials) are known:
    // log records, leases and the engine's files get believable times from here on.
    clock_floor(&config, console);
    control.timeline.end(storage_stage);
    // The log file and forwarding are configured by the node file too (per-node servers).
    control.timeline.time("log outputs", || {
        crate::log::start_outputs(&config.log, logger, console)
    });
    // sysctls and rlimits of all layers (node file included; modules are loaded by now).
    control.timeline.time("settings", || {
        crate::system::apply_settings(&config, console)
    });
    // The ZFS pool (ZFS images): after /var and the node file, which may name it.
    control
        .timeline
        .time("zfs", || crate::zfs::setup(&config.zfs, console));
    // Network, then time, before the engine: berthd pulls from mirrors over TLS. After
    // storage and sysctls, so the node file's [network] and [time] and net.* sysctls apply.
    let config_files = [config_path, Path::new(crate::state_disk::NODE_FILE)];
    let network = control.timeline.time("network", || {
        let network = crate::net::stage(&config.network, &config_files, &cmdline, console);
        network.wait();
        network
    });
    // berth.config=<url> (PXE): fetched now that the network is up, layered after the node
    // file and before the command line.
    let config = match config_url.as_deref() {
        Some(url) => control.timeline.time("berth.config", || {
            crate::remote_config::stage(Some(url), config, &config_files, &cmdline, console)
        }),
        None => config,
    };
    let sources = crate::net::config::Sources::load(&config_files, &cmdline);
    control.timeline.time("time", || {
        crate::time::stage(&config.time, &network.ntp_servers(), &sources, console);
        crate::time::floor::record(Path::new(crate::time::floor::RECORD));
    });
    let mut supervisor = Supervisor::new(service_specs(&config), console, tx);
    if let Some(tree) = cgroups {
        supervisor = supervisor.with_cgroups(tree);
    }
    let mut files = vec![
        config_path.to_path_buf(),
        crate::state_disk::NODE_FILE.into(),
    ];
    if config_url.is_some() {
        files.push(crate::remote_config::FETCHED_PATH.into());
    }
    let mut node = crate::reload::Node {
        config,
        files,
        cmdline,
        remote: None,
    };
    // The remote API joins the services when the node has its credentials (docs/remote-api.md).
    crate::reload::apply_remote(&mut node, &mut supervisor, console, Instant::now());
    control.set_node_config(crate::node_config::Env::new(&node.config));
    control.set_services(std::sync::Arc::new(supervisor.control()));
    // Ends at `berth ready` (see control::server).
    control.timeline.begin("services");
    // The engine stage: berthd and the [[service]]s start once storage, network and time
    // (the steps above) are done. `supervisor.control()` is the handle for the control API.
    supervisor.start(Instant::now());
    main_loop(
        &mut supervisor,
        signals.as_ref(),
        &rx,
        node,
        &network,
        console,
    )
}

/// The clock is never behind the image's build time, the last time recorded on the state
/// disk, or the start of validity of the remote API's credentials ([`crate::time::floor`]);
/// time servers, when there are any, correct it afterwards.
fn clock_floor(config: &Config, console: Console) {
    let plan = crate::remote_api::plan(&config.remote, Path::new(crate::remote_api::RUN_DIR));
    let creds: Vec<&Path> = match &plan {
        crate::remote_api::Plan::On(s) => vec![s.ca.as_path(), s.cert.as_path()],
        crate::remote_api::Plan::Off { .. } => Vec::new(),
    };
    if let Some(floor) = crate::time::floor::compute(
        Path::new(berth_layout::paths::BUILD_EPOCH),
        Path::new(crate::time::floor::RECORD),
        &creds,
    ) {
        crate::time::floor::enforce(&floor, console);
    }
}

/// The services from the configuration: berthd first.
pub fn service_specs(config: &Config) -> Vec<ServiceSpec> {
    let b = &config.berthd;
    let mut specs = vec![ServiceSpec {
        name: "berthd".into(),
        path: b.path.clone(),
        args: b.args.clone(),
        max_failures: b.max_failures,
        backoff: Backoff {
            initial: Duration::from_millis(b.backoff_initial_ms),
            max: Duration::from_millis(b.backoff_max_ms),
        },
        readiness: Readiness::Version {
            address: b.address.clone(),
            timeout: b.ready_timeout(),
        },
        restart: crate::supervisor::RestartPolicy::Always,
        stop_timeout: Duration::from_secs(
            b.stop_timeout_secs.unwrap_or(config.shutdown.timeout_secs),
        ),
        resources: b.resources.clone(),
        config_key: "berthd".into(),
    }];
    specs.extend(
        config
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| ServiceSpec {
                name: s.name.clone(),
                path: s.path.clone(),
                args: s.args.clone(),
                max_failures: s.max_failures,
                backoff: Backoff {
                    initial: Duration::from_millis(s.backoff_initial_ms),
                    max: Duration::from_millis(s.backoff_max_ms),
                },
                readiness: Readiness::Running,
                restart: s.restart,
                stop_timeout: Duration::from_secs(
                    s.stop_timeout_secs.unwrap_or(config.shutdown.timeout_secs),
                ),
                resources: s.resources.clone(),
                config_key: format!("service[{i}]"),
            }),
    );
    specs
}

/// Loads `[modules] load` and reports the outcome in one info line plus one warning per
/// failure (the console is slow).
fn load_modules(config: &Config, index: Option<&ModuleIndex>, console: Console) {
    if config.modules.load.is_empty() {
        return;
    }
    let Some(index) = index else { return };
    let mut loaded = Vec::new();
    let mut present = Vec::new();
    for (name, result) in index.load(&config.modules.load) {
        match result {
            Ok(Outcome::Loaded) => loaded.push(name),
            Ok(Outcome::AlreadyLoaded | Outcome::Builtin) => present.push(name),
            Err(err) => console.warn(&format!("modules: {err}")),
        }
    }
    let mut line = format!(
        "modules: loaded {}",
        if loaded.is_empty() {
            "none".into()
        } else {
            loaded.join(" ")
        }
    );
    if !present.is_empty() {
        line.push_str(&format!(
            "; built in or already loaded: {}",
            present.join(" ")
        ));
    }
    console.info(&line);
}

fn main_loop(
    supervisor: &mut Supervisor,
    signals: Option<&SignalFd>,
    rx: &events::Receiver<Event>,
    mut node: crate::reload::Node,
    network: &crate::net::Network,
    console: Console,
) -> ! {
    let shutdown_timeout = Duration::from_secs(node.config.shutdown.timeout_secs);
    let record = Path::new(crate::time::floor::RECORD);
    // DHCP RELEASE before the services stop (the network is still up then); the time
    // recorded for the next boot's clock floor.
    let release = || {
        crate::time::floor::record(record);
        if network.release_on_shutdown() {
            network.release(RELEASE_TIMEOUT);
        }
    };
    let mut next_record = Instant::now() + crate::time::floor::RECORD_EVERY;
    // Once boot has settled after `berth ready`, give back what only boot needed.
    let mut trim = Trim::Waiting;
    loop {
        let now = Instant::now();
        if now >= next_record {
            crate::time::floor::record(record);
            next_record = now + crate::time::floor::RECORD_EVERY;
        }
        supervisor.tick(now);
        trim = match trim {
            Trim::Waiting if supervisor.announced() => Trim::At(now + TRIM_AFTER_READY),
            Trim::At(at) if now >= at => {
                let t = crate::memory::trim_after_boot();
                console.info(&format!(
                    "boot done: returned boot-only memory ({} read-only mappings, {} KiB, advised out; heap trimmed: {})",
                    t.mappings,
                    t.bytes / 1024,
                    t.heap_released
                ));
                Trim::Done
            }
            other => other,
        };
        let sleep = supervisor
            .next_deadline()
            .into_iter()
            .chain(match trim {
                Trim::At(at) => Some(at),
                _ => None,
            })
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        // Round up so we do not wake a hair early and spin.
        let ms = u16::try_from(sleep.as_millis() + 1).unwrap_or(u16::MAX);
        {
            let mut fds = vec![PollFd::new(rx.fd(), PollFlags::POLLIN)];
            if let Some(sfd) = signals {
                fds.push(PollFd::new(
                    std::os::fd::AsFd::as_fd(sfd),
                    PollFlags::POLLIN,
                ));
            }
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
        if let Some(sfd) = signals {
            for sig in reaper::pending(sfd) {
                match sig {
                    Signal::SIGTERM | Signal::SIGUSR2 | Signal::SIGPWR => {
                        release();
                        power::shutdown(
                            supervisor,
                            shutdown_timeout,
                            PowerAction::Poweroff,
                            sig.as_str(),
                            console,
                        )
                    }
                    Signal::SIGINT => {
                        release();
                        power::shutdown(
                            supervisor,
                            shutdown_timeout,
                            PowerAction::Reboot,
                            sig.as_str(),
                            console,
                        )
                    }
                    Signal::SIGCHLD => {}
                    Signal::SIGHUP => {
                        crate::reload::reload(&mut node, supervisor, console, Instant::now());
                    }
                    other => console.debug(&format!("ignoring {}", other.as_str())),
                }
            }
        }
        for event in rx.drain() {
            match event {
                Event::Reload { reply } => {
                    let report =
                        crate::reload::reload(&mut node, supervisor, console, Instant::now());
                    let _ = reply.send(report);
                }
                other => supervisor.handle(other, Instant::now()),
            }
        }
        for (pid, status) in reaper::reap() {
            if !supervisor.on_exit(pid, status, Instant::now()) && console.level() >= Level::Debug {
                console.debug(&format!("reaped orphan {pid} ({status})"));
            }
        }
    }
}

/// Where the main loop is with [`crate::memory::trim_after_boot`].
#[derive(Clone, Copy)]
enum Trim {
    /// Boot not done yet.
    Waiting,
    /// `berth ready` was announced; trim at this time.
    At(Instant),
    /// Trimmed.
    Done,
}

/// How long after `berth ready` init trims its boot-only memory: boot's last stragglers (the
/// first API calls, log flushes) are done by then.
const TRIM_AFTER_READY: Duration = Duration::from_secs(3);

/// Longest shutdown waits for the DHCP clients to send their RELEASE.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest the storage stage waits for module loading (block drivers) before looking for the
/// state partition anyway.
const MODULES_TIMEOUT: Duration = Duration::from_secs(60);

/// A one-shot flag threads wait on (module loading done).
#[derive(Debug, Default)]
pub struct Latch {
    done: std::sync::Mutex<bool>,
    cond: std::sync::Condvar,
}

impl Latch {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Waits until the flag is set or `timeout` passes; returns whether it is set.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |done| !*done)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
}

/// Re-reads the layers with the node file (`/var/etc/berth/node.toml`) between the image's
/// file and the kernel command line, now that `/var` is mounted. Only the node file's errors
/// are reported here (the others were reported at the first load). Settings used before this
/// point (console level, modules, storage itself) keep the first load's values.
fn with_node_file(config_path: &Path, cmdline: &str, config: Config, console: Console) -> Config {
    let node = Path::new(crate::state_disk::NODE_FILE);
    if !node.exists() {
        return config;
    }
    let loaded = Config::load_layers(&[config_path, node], cmdline);
    for err in loaded.file_errors.iter().filter(|e| e.path() == node) {
        console.error(&format!("{err}; {}", err.consequence()));
    }
    console.info(&format!("config: node file {} applied", node.display()));
    loaded.config
}

/// Mounts that need a module first (efivarfs on UEFI machines).
fn mount_late(console: Console) {
    match mounts::mount(&mounts::EFIVARFS) {
        Ok(Mounted::Mounted) => console.debug("mounted efivarfs"),
        Ok(_) => {}
        Err(err) => console.warn(&err.to_string()),
    }
}

/// Where stage 2 reads its configuration.
pub fn default_config_path() -> &'static Path {
    Path::new(config::DEFAULT_PATH)
}
