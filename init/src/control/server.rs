//! The ttrpc server of the control API and its `System` service.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use berth_api::proto::{system, system_ttrpc};
use nix::sys::signal::Signal;
use ttrpc::r#async::{ServerStreamSender, TtrpcContext};

use super::{Control, RestartError};
use crate::log::{Filter, Record, Severity};

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Another process serves the socket.
    #[error("another process is already serving {}", .0.display())]
    InUse(PathBuf),
    /// Binding or setting up the socket failed.
    #[error("cannot listen on {path}: {source}", path = path.display())]
    Listen {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ttrpc failed to start or stop.
    #[error("ttrpc server: {0}")]
    Ttrpc(#[source] ttrpc::Error),
}

/// Serves `control` on `path` until `stop` completes (never, in init). Blocks the thread.
pub fn serve(
    control: &'static Control,
    path: &Path,
    stop: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    rt.block_on(async {
        let listener = bind(path)?;
        let service = Arc::new(SystemService { control });
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener.into())
            .register_service(system_ttrpc::create_system(service));
        server.start().await.map_err(ServerError::Ttrpc)?;
        control
            .console
            .debug(&format!("control API serving {}", path.display()));
        tokio::spawn(boot_summary(control));
        stop.await;
        server.shutdown().await.map_err(ServerError::Ttrpc)
    })
}

/// Once the node is ready, one info line with every stage's duration: the boot log's summary.
async fn boot_summary(control: &'static Control) {
    let mut changes = control.logger.subscribe();
    let ready = loop {
        if let Some(ready) = control.logger.ready_at() {
            break ready;
        }
        if changes.changed().await.is_err() {
            return;
        }
    };
    control
        .console
        .info(&summary_line(&control.timeline.stages(), ready));
}

/// `boot stages: kernel+initramfs 4.20 s, mounts 5.9 ms, …, services 400.3 ms; ready at 4.81 s`
/// (a stage still running, like `modules` loading in parallel, says so).
pub fn summary_line(stages: &[super::StageTime], ready: Duration) -> String {
    let human = |d: Duration| {
        if d >= Duration::from_secs(1) {
            format!("{:.2} s", d.as_secs_f64())
        } else {
            format!("{:.1} ms", d.as_secs_f64() * 1000.0)
        }
    };
    let parts: Vec<String> = stages
        .iter()
        .map(|s| {
            let d = s
                .duration
                .or_else(|| (s.name == "services").then(|| ready.saturating_sub(s.start)));
            match d {
                Some(d) => format!("{} {}", s.name, human(d)),
                None => format!("{} still running", s.name),
            }
        })
        .collect();
    format!(
        "boot stages: {}; ready at {}",
        parts.join(", "),
        human(ready)
    )
}

/// Binds with mode 0600, replacing a stale socket file but never a live one.
fn bind(path: &Path) -> Result<tokio::net::UnixListener, ServerError> {
    let listen_err = |source| ServerError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(listen_err)?;
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(listen_err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(listen_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(listen_err)?;
    Ok(listener)
}

/// `berth.services.system.v1.System`.
pub struct SystemService {
    control: &'static Control,
}

fn status_err(code: ttrpc::Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The filter of a Log/FollowLog request; a bad severity is INVALID_ARGUMENT naming the field.
pub fn filter_of(req: &system::LogRequest) -> ttrpc::Result<Filter> {
    let min_severity = if req.min_severity.is_empty() {
        Severity::Debug
    } else {
        req.min_severity.parse().map_err(|e: String| {
            status_err(ttrpc::Code::INVALID_ARGUMENT, format!("min_severity: {e}"))
        })?
    };
    let source = (!req.source.is_empty()).then(|| req.source.clone());
    Ok(Filter {
        min_severity,
        source,
    })
}

/// A record on the wire.
pub fn to_proto(r: &Record) -> system::LogRecord {
    let time_us = match r.time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    };
    system::LogRecord {
        seq: r.seq,
        time_us,
        uptime_us: micros(r.uptime),
        facility: u32::from(r.facility.code()),
        severity: u32::from(r.severity.code()),
        origin: r.origin.as_str().into(),
        name: r.name.clone(),
        pid: r.pid.unwrap_or(0),
        message: r.message.clone(),
        ..Default::default()
    }
}

/// init's resident memory: `Rss:` of `/proc/self/smaps_rollup`, which walks the page tables
/// and is exact. `VmRSS` in `/proc/self/status` is only the fallback: kernels before 6.2 keep
/// it in per-thread batched counters that drift (after init's boot trim it can read below the
/// anonymous memory alone).
pub fn own_rss_bytes() -> Option<u64> {
    let kib = |text: String, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|t| kib(t, "Rss:"))
        .or_else(|| kib(std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:"))
        .map(|kb| kb * 1024)
}

/// The boot section of Status.
fn boot_info(boot: &crate::slots::Slots) -> system::BootInfo {
    let state = boot.state();
    system::BootInfo {
        uefi: !state.loader.is_empty() || state.esp.is_some(),
        firmware: state.firmware.clone(),
        loader: state.loader.clone(),
        stub: state.stub.clone(),
        selected: state.selected.clone(),
        outcome: state.outcome.clone(),
        slots: boot
            .list()
            .into_iter()
            .map(|s| system::BootSlot {
                file: s.entry.file.clone(),
                slot: s.entry.slot.to_string(),
                generation: s.entry.generation,
                version: s.version,
                booted: s.booted,
                trial: s.entry.on_trial(),
                bad: s.entry.is_bad(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// Upgrade errors as ttrpc codes: the caller's mistakes are INVALID_ARGUMENT or
/// FAILED_PRECONDITION, the ESP's failures INTERNAL.
fn upgrade_err(err: crate::slots::upgrade::UpgradeError) -> ttrpc::Error {
    use crate::slots::upgrade::UpgradeError as E;
    let code = match &err {
        E::NoEsp | E::NoUpload => ttrpc::Code::FAILED_PRECONDITION,
        E::Offset { .. } | E::Size { .. } | E::Digest { .. } | E::NotUki(_) => {
            ttrpc::Code::INVALID_ARGUMENT
        }
        E::Io { .. } => ttrpc::Code::INTERNAL,
    };
    status_err(code, err.to_string())
}

impl SystemService {
    fn slots(&self) -> ttrpc::Result<&std::sync::Arc<crate::slots::Slots>> {
        self.control.slots().ok_or_else(|| {
            status_err(
                ttrpc::Code::FAILED_PRECONDITION,
                "the boot stage has not run yet; try again once the node is up",
            )
        })
    }

    fn power(&self, signal: Signal, what: &str) {
        self.control
            .console
            .info(&format!("{what} requested through the control API"));
        // Answer first, then signal init: the main loop shuts down as for the real signal.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), signal);
        });
    }
}

#[async_trait]
impl system_ttrpc::System for SystemService {
    async fn status(
        &self,
        _ctx: &TtrpcContext,
        _req: system::StatusRequest,
    ) -> ttrpc::Result<system::StatusResponse> {
        let c = self.control;
        let ready_at = c.logger.ready_at();
        let stages = c
            .timeline
            .stages()
            .into_iter()
            .map(|s| {
                // The services stage ends when berthd first answers (`berth ready`).
                let duration = s.duration.or_else(|| {
                    (s.name == "services")
                        .then_some(ready_at)
                        .flatten()
                        .map(|r| r.saturating_sub(s.start))
                });
                system::Stage {
                    name: s.name.into(),
                    start_us: micros(s.start),
                    duration_us: duration.map(micros).unwrap_or(0),
                    done: duration.is_some(),
                    ..Default::default()
                }
            })
            .collect();
        let (services_known, services) = match c.services() {
            Some(s) => (
                true,
                s.services()
                    .into_iter()
                    .map(|s| system::Service {
                        name: s.name,
                        state: s.state,
                        pid: s.pid.unwrap_or(0),
                        restarts: s.restarts,
                        ..Default::default()
                    })
                    .collect(),
            ),
            None => (false, Vec::new()),
        };
        let (log_bytes, log_dropped) = c.logger.usage();
        Ok(system::StatusResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_us: micros(crate::console::uptime()),
            ready: ready_at.is_some(),
            ready_us: ready_at.map(micros).unwrap_or(0),
            stages,
            services_known,
            services,
            init_rss_bytes: own_rss_bytes().unwrap_or(0),
            log_bytes: log_bytes as u64,
            log_dropped,
            boot: protobuf::MessageField::from_option(c.slots().map(|b| boot_info(b))),
            ..Default::default()
        })
    }

    async fn upgrade_begin(
        &self,
        _ctx: &TtrpcContext,
        req: system::UpgradeBeginRequest,
    ) -> ttrpc::Result<system::UpgradeBeginResponse> {
        let boot = self.slots()?;
        boot.upgrade_begin(req.size, &req.sha256)
            .map_err(upgrade_err)?;
        self.control.console.info(&format!(
            "boot: upgrade started through the control API ({} bytes, sha256 {})",
            req.size, req.sha256
        ));
        Ok(system::UpgradeBeginResponse::default())
    }

    async fn upgrade_write(
        &self,
        _ctx: &TtrpcContext,
        req: system::UpgradeWriteRequest,
    ) -> ttrpc::Result<system::UpgradeWriteResponse> {
        self.slots()?
            .upgrade_write(req.offset, &req.data)
            .map_err(upgrade_err)?;
        Ok(system::UpgradeWriteResponse::default())
    }

    async fn upgrade_commit(
        &self,
        _ctx: &TtrpcContext,
        _req: system::UpgradeCommitRequest,
    ) -> ttrpc::Result<system::UpgradeCommitResponse> {
        let done = self.slots()?.upgrade_commit().map_err(upgrade_err)?;
        self.control.console.notice(&format!(
            "boot: upgrade installed in slot {} as {} (version {}); it is tried once at the next boot",
            done.slot, done.file, done.version
        ));
        Ok(system::UpgradeCommitResponse {
            slot: done.slot.to_string(),
            generation: done.generation,
            file: done.file,
            version: done.version,
            ..Default::default()
        })
    }

    async fn log(
        &self,
        _ctx: &TtrpcContext,
        req: system::LogRequest,
    ) -> ttrpc::Result<system::LogResponse> {
        let filter = filter_of(&req)?;
        let n = if req.lines == 0 {
            usize::MAX
        } else {
            req.lines as usize
        };
        let (records, _) = self.control.logger.tail(n, &filter);
        Ok(system::LogResponse {
            records: records.iter().map(to_proto).collect(),
            ..Default::default()
        })
    }

    async fn follow_log(
        &self,
        _ctx: &TtrpcContext,
        req: system::LogRequest,
        sink: ServerStreamSender<system::LogRecord>,
    ) -> ttrpc::Result<()> {
        let filter = filter_of(&req)?;
        let logger = self.control.logger;
        let mut changes = logger.subscribe();
        changes.borrow_and_update();
        let (tail, mut next) = logger.tail(req.lines as usize, &filter);
        for r in &tail {
            if sink.send(&to_proto(r)).await.is_err() {
                return Ok(());
            }
        }
        loop {
            changes.borrow_and_update();
            let batch = logger.read_from(next, &filter, 256);
            if batch.missed > 0 {
                let mut note = Record::now(
                    crate::log::Origin::Init,
                    crate::log::Facility::DAEMON,
                    Severity::Warning,
                    crate::console::INIT,
                    &format!(
                        "-- {} records missed: the ring dropped them before they were sent --",
                        batch.missed
                    ),
                );
                note.time = SystemTime::now();
                if sink.send(&to_proto(&note)).await.is_err() {
                    return Ok(());
                }
            }
            for r in &batch.records {
                // The client went away: end quietly.
                if sink.send(&to_proto(r)).await.is_err() {
                    return Ok(());
                }
            }
            let idle = batch.records.is_empty() && batch.missed == 0;
            next = batch.next;
            if idle && changes.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    async fn reboot(
        &self,
        _ctx: &TtrpcContext,
        _req: system::PowerRequest,
    ) -> ttrpc::Result<system::PowerResponse> {
        self.power(Signal::SIGINT, "reboot");
        Ok(system::PowerResponse::default())
    }

    async fn poweroff(
        &self,
        _ctx: &TtrpcContext,
        _req: system::PowerRequest,
    ) -> ttrpc::Result<system::PowerResponse> {
        self.power(Signal::SIGTERM, "power off");
        Ok(system::PowerResponse::default())
    }

    async fn reload(
        &self,
        _ctx: &TtrpcContext,
        _req: system::ReloadRequest,
    ) -> ttrpc::Result<system::ReloadResponse> {
        super::node::reload(self.control).await
    }

    async fn node_config_list(
        &self,
        _ctx: &TtrpcContext,
        _req: system::NodeConfigListRequest,
    ) -> ttrpc::Result<system::NodeConfigListResponse> {
        super::node::list(self.control).await
    }

    async fn node_config_get(
        &self,
        _ctx: &TtrpcContext,
        req: system::NodeConfigGetRequest,
    ) -> ttrpc::Result<system::NodeConfigGetResponse> {
        super::node::get(self.control, req).await
    }

    async fn node_config_put(
        &self,
        _ctx: &TtrpcContext,
        req: system::NodeConfigPutRequest,
    ) -> ttrpc::Result<system::NodeConfigPutResponse> {
        super::node::put(self.control, req).await
    }

    async fn restart_service(
        &self,
        _ctx: &TtrpcContext,
        req: system::RestartServiceRequest,
    ) -> ttrpc::Result<system::RestartServiceResponse> {
        let Some(services) = self.control.services() else {
            return Err(status_err(
                ttrpc::Code::UNIMPLEMENTED,
                "service control is not connected to the supervisor in this build",
            ));
        };
        let services = Arc::clone(services);
        let name = req.name.clone();
        // The supervisor side may wait for the main loop: keep the runtime free meanwhile.
        let result = tokio::task::spawn_blocking(move || services.restart(&name))
            .await
            .map_err(|e| status_err(ttrpc::Code::INTERNAL, format!("restart task failed: {e}")))?;
        match result {
            Ok(()) => {
                self.control.console.info(&format!(
                    "restart of {} requested through the control API",
                    req.name
                ));
                Ok(system::RestartServiceResponse::default())
            }
            Err(e @ RestartError::NotFound(_)) => {
                Err(status_err(ttrpc::Code::NOT_FOUND, e.to_string()))
            }
            Err(e @ RestartError::Refused { .. }) => {
                Err(status_err(ttrpc::Code::FAILED_PRECONDITION, e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ServiceControl, ServiceStatus};
    use super::*;
    use crate::console::{Console, Level};
    use crate::log::Logger;

    /// A fixed service table standing in for the supervisor side of the seam.
    struct Table;

    impl ServiceControl for Table {
        fn services(&self) -> Vec<ServiceStatus> {
            vec![ServiceStatus {
                name: "berthd".into(),
                state: "ready".into(),
                pid: Some(42),
                restarts: 1,
            }]
        }
        fn reload(&self) -> Result<crate::reload::ReloadReport, String> {
            Ok(crate::reload::ReloadReport {
                applied: vec!["remote API: off: test".into()],
                errors: Vec::new(),
            })
        }
        fn restart(&self, name: &str) -> Result<(), RestartError> {
            if name == "berthd" {
                Ok(())
            } else {
                Err(RestartError::NotFound(name.into()))
            }
        }
    }

    fn start(with_services: bool) -> (tempfile::TempDir, String, &'static Control) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("init.sock");
        let logger: &'static Logger = Box::leak(Box::new(Logger::new(1 << 16)));
        let console = Console::new(Level::Error).with_log(logger);
        let timeline = super::super::Timeline::starting_at(Duration::from_millis(800));
        timeline.time("mounts", || ());
        let services = timeline.begin("services");
        let _ = services;
        let control: &'static Control =
            Box::leak(Box::new(Control::new(timeline, logger, console)));
        if with_services {
            control.set_services(Arc::new(Table));
        }
        let p = path.clone();
        std::thread::spawn(move || serve(control, &p, std::future::pending()).unwrap());
        let start = std::time::Instant::now();
        while !path.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "server never bound"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        (dir, format!("unix://{}", path.display()), control)
    }

    fn client(address: &str) -> (tokio::runtime::Runtime, system_ttrpc::SystemClient) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let c = rt.block_on(async { ttrpc::r#async::Client::connect(address).await.unwrap() });
        (rt, system_ttrpc::SystemClient::new(c))
    }

    fn ctx() -> ttrpc::context::Context {
        ttrpc::context::with_timeout(30_000_000_000)
    }

    #[test]
    fn status_reports_stages_ready_and_services() {
        let (_dir, address, control) = start(true);
        control
            .console
            .notice("berth ready (berthd 0.1.0, uptime 3.18s)");
        let (rt, c) = client(&address);
        let s = rt
            .block_on(c.status(ctx(), &system::StatusRequest::default()))
            .unwrap();
        let names: Vec<&str> = s.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["kernel+initramfs", "mounts", "services"]);
        assert_eq!(s.stages[0].duration_us, 800_000);
        assert!(s.stages.iter().all(|s| s.done), "{:?}", s.stages);
        assert!(s.ready && s.ready_us > 0);
        assert!(s.services_known);
        assert_eq!(
            (s.services[0].name.as_str(), s.services[0].pid),
            ("berthd", 42)
        );
        assert!(s.init_rss_bytes > 0 && s.log_bytes > 0);
    }

    #[test]
    fn summary_names_every_stage() {
        let stages = [
            super::super::StageTime {
                name: "kernel+initramfs",
                start: Duration::ZERO,
                duration: Some(Duration::from_millis(4200)),
            },
            super::super::StageTime {
                name: "mounts",
                start: Duration::from_millis(4200),
                duration: Some(Duration::from_micros(5900)),
            },
            super::super::StageTime {
                name: "modules",
                start: Duration::from_millis(4300),
                duration: None,
            },
            super::super::StageTime {
                name: "services",
                start: Duration::from_millis(4400),
                duration: None,
            },
        ];
        assert_eq!(
            summary_line(&stages, Duration::from_millis(4810)),
            "boot stages: kernel+initramfs 4.20 s, mounts 5.9 ms, modules still running, services 410.0 ms; ready at 4.81 s"
        );
    }

    #[test]
    fn log_filters_and_rejects_bad_severity() {
        let (_dir, address, control) = start(false);
        control.console.info("hello from init");
        control.console.warn("a warning");
        control.logger.service_line("svc", "ERROR it broke");
        let (rt, c) = client(&address);
        let req = system::LogRequest {
            min_severity: "warning".into(),
            ..Default::default()
        };
        let r = rt.block_on(c.log(ctx(), &req)).unwrap();
        let msgs: Vec<&str> = r.records.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(msgs, ["a warning", "ERROR it broke"]);
        let req = system::LogRequest {
            source: "svc".into(),
            lines: 5,
            ..Default::default()
        };
        assert_eq!(rt.block_on(c.log(ctx(), &req)).unwrap().records.len(), 1);
        let req = system::LogRequest {
            min_severity: "loud".into(),
            ..Default::default()
        };
        let err = rt.block_on(c.log(ctx(), &req)).unwrap_err();
        assert!(
            format!("{err:?}").contains("min_severity: severity \\\"loud\\\""),
            "{err:?}"
        );
    }

    #[test]
    fn follow_streams_tail_then_new_records() {
        let (_dir, address, control) = start(false);
        control.console.info("old one");
        control.console.info("old two");
        let (rt, c) = client(&address);
        let req = system::LogRequest {
            lines: 1,
            source: "init".into(),
            ..Default::default()
        };
        rt.block_on(async {
            let mut stream = c.follow_log(ctx(), &req).await.unwrap();
            assert_eq!(stream.recv().await.unwrap().unwrap().message, "old two");
            control.logger.service_line("svc", "not init");
            control.console.info("new one");
            let next = tokio::time::timeout(Duration::from_secs(30), stream.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(next.message, "new one");
        });
    }

    #[test]
    fn restart_needs_the_supervisor_and_maps_errors() {
        let (_dir, address, _) = start(false);
        let (rt, c) = client(&address);
        let req = system::RestartServiceRequest {
            name: "berthd".into(),
            ..Default::default()
        };
        let err = rt.block_on(c.restart_service(ctx(), &req)).unwrap_err();
        assert!(format!("{err:?}").contains("UNIMPLEMENTED"), "{err:?}");
        let (_dir2, address, _) = start(true);
        let (rt, c) = client(&address);
        rt.block_on(c.restart_service(ctx(), &req)).unwrap();
        let req = system::RestartServiceRequest {
            name: "nope".into(),
            ..Default::default()
        };
        let err = rt.block_on(c.restart_service(ctx(), &req)).unwrap_err();
        assert!(format!("{err:?}").contains("NOT_FOUND"), "{err:?}");
    }
}
