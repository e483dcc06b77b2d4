//! `berthctl system …`: berth-init's control API (`berth.services.system.v1.System` on
//! `/run/berth/init.sock`, or the host end of the `org.berth.init` virtio-serial port):
//! boot stages and services, the log, reboot, power-off and service restarts.

use std::time::Duration;

use clap::Subcommand;

use berth_api::proto::{system, system_ttrpc};
use berth_api::client::normalize_address;
use crate::{table, Format};

/// Default address of init's control API.
pub const DEFAULT_INIT_ADDRESS: &str = "/run/berth/init.sock";

/// Severity names by code, as syslog tools print them.
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];
/// Facility names by code.
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// `berthctl system` verbs.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Boot stages with their durations, boot-to-ready, services, init's memory.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// init's log: kernel, /dev/log, services and init itself.
    Log {
        /// Keep printing new records as they come.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Show the last N records (0: all the ring holds). Not `-n`: that is berthctl's global
        /// namespace flag.
        #[arg(long, short = 'l', default_value_t = 50)]
        lines: u32,
        /// Only records at most this severe (emerg … debug, or err/warn/…).
        #[arg(long, short = 'p', value_name = "SEVERITY", default_value = "")]
        min_severity: String,
        /// Only this origin (kmsg, syslog, service, init) or name (berthd, kernel, an app).
        #[arg(long, short = 's', default_value = "")]
        source: String,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Reboot the node (orderly, like Ctrl-Alt-Del).
    Reboot,
    /// Power the node off (orderly, like SIGTERM to init).
    Poweroff,
    /// Restart one supervised service.
    Restart {
        /// The service name (berthd or a [[service]] name).
        service: String,
    },
    /// Install a unified kernel image (from `berth-image uki`) into the inactive A/B slot,
    /// to be tried once at the next boot (docs/upgrades.md).
    Upgrade {
        /// The UKI (`.efi`).
        file: std::path::PathBuf,
        /// Reboot into it once it is installed.
        #[arg(long)]
        reboot: bool,
    },
}

use berth_api::MAX_CHUNK as UPGRADE_CHUNK;

/// Errors talking to init.
#[derive(Debug, thiserror::Error)]
pub enum SystemCtlError {
    #[error("cannot connect to berth-init at {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: ttrpc::Error,
    },
    #[error(
        "{method} call to berth-init at {address} failed: {}",
        describe(source)
    )]
    Call {
        address: String,
        method: &'static str,
        #[source]
        source: ttrpc::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{method} call to berth-init at {address} timed out after {timeout:?}")]
    Timeout {
        address: String,
        method: &'static str,
        timeout: Duration,
    },
}

fn describe(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

struct Conn {
    address: String,
    timeout: Duration,
    client: system_ttrpc::SystemClient,
}

impl Conn {
    async fn connect(address: &str, timeout: Duration) -> Result<Self, SystemCtlError> {
        let address = normalize_address(address);
        let inner =
            match tokio::time::timeout(timeout, ttrpc::r#async::Client::connect(&address)).await {
                Ok(r) => r.map_err(|source| SystemCtlError::Connect {
                    address: address.clone(),
                    source,
                })?,
                Err(_) => {
                    return Err(SystemCtlError::Timeout {
                        address,
                        method: "connect",
                        timeout,
                    })
                }
            };
        Ok(Self {
            client: system_ttrpc::SystemClient::new(inner),
            address,
            timeout,
        })
    }

    fn ctx(&self) -> ttrpc::context::Context {
        ttrpc::context::with_timeout(self.timeout.as_nanos().min(i64::MAX as u128) as i64)
    }

    async fn call<T>(
        &self,
        method: &'static str,
        fut: impl std::future::Future<Output = ttrpc::Result<T>>,
    ) -> Result<T, SystemCtlError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|source| SystemCtlError::Call {
                address: self.address.clone(),
                method,
                source,
            }),
            Err(_) => Err(SystemCtlError::Timeout {
                address: self.address.clone(),
                method,
                timeout: self.timeout,
            }),
        }
    }
}

/// Runs one `system` verb against init at `address`.
pub async fn run(
    command: &SystemCommand,
    address: &str,
    timeout: Duration,
) -> Result<(), SystemCtlError> {
    let conn = Conn::connect(address, timeout).await?;
    match command {
        SystemCommand::Status { format } => {
            let s = conn
                .call(
                    "Status",
                    conn.client
                        .status(conn.ctx(), &system::StatusRequest::new()),
                )
                .await?;
            if *format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status_json(&s)).expect("json of plain values")
                );
            } else {
                print!("{}", status_text(&s));
            }
        }
        SystemCommand::Log {
            follow,
            lines,
            min_severity,
            source,
            format,
        } => {
            let req = system::LogRequest {
                lines: *lines,
                min_severity: min_severity.clone(),
                source: source.clone(),
                ..Default::default()
            };
            if *follow {
                let ctx = ttrpc::context::Context::default();
                let mut stream = conn
                    .call("FollowLog", conn.client.follow_log(ctx, &req))
                    .await?;
                loop {
                    match stream.recv().await {
                        Ok(Some(r)) => print_record(&r, *format),
                        Ok(None) | Err(ttrpc::Error::Eof) => break,
                        Err(source) => {
                            return Err(SystemCtlError::Call {
                                address: conn.address.clone(),
                                method: "FollowLog",
                                source,
                            })
                        }
                    }
                }
            } else {
                let r = conn.call("Log", conn.client.log(conn.ctx(), &req)).await?;
                for record in &r.records {
                    print_record(record, *format);
                }
            }
        }
        SystemCommand::Reboot => {
            conn.call(
                "Reboot",
                conn.client.reboot(conn.ctx(), &system::PowerRequest::new()),
            )
            .await?;
            println!("rebooting");
        }
        SystemCommand::Poweroff => {
            conn.call(
                "Poweroff",
                conn.client
                    .poweroff(conn.ctx(), &system::PowerRequest::new()),
            )
            .await?;
            println!("powering off");
        }
        SystemCommand::Restart { service } => {
            let req = system::RestartServiceRequest {
                name: service.clone(),
                ..Default::default()
            };
            conn.call(
                "RestartService",
                conn.client.restart_service(conn.ctx(), &req),
            )
            .await?;
            println!("restarting {service}");
        }
        SystemCommand::Upgrade { file, reboot } => {
            upgrade(&conn, file).await?;
            if *reboot {
                conn.call(
                    "Reboot",
                    conn.client.reboot(conn.ctx(), &system::PowerRequest::new()),
                )
                .await?;
                println!("rebooting into it");
            }
        }
    }
    Ok(())
}

/// Streams `file` to init in chunks and commits it into the inactive slot.
async fn upgrade(conn: &Conn, file: &std::path::Path) -> Result<(), SystemCtlError> {
    use sha2::{Digest, Sha256};
    let data = std::fs::read(file).map_err(|source| SystemCtlError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let sha: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let started = std::time::Instant::now();
    let begin = system::UpgradeBeginRequest {
        size: data.len() as u64,
        sha256: sha.clone(),
        ..Default::default()
    };
    conn.call(
        "UpgradeBegin",
        conn.client.upgrade_begin(conn.ctx(), &begin),
    )
    .await?;
    for (i, chunk) in data.chunks(UPGRADE_CHUNK).enumerate() {
        let req = system::UpgradeWriteRequest {
            offset: (i * UPGRADE_CHUNK) as u64,
            data: chunk.to_vec(),
            ..Default::default()
        };
        conn.call("UpgradeWrite", conn.client.upgrade_write(conn.ctx(), &req))
            .await?;
    }
    let done = conn
        .call(
            "UpgradeCommit",
            conn.client
                .upgrade_commit(conn.ctx(), &system::UpgradeCommitRequest::new()),
        )
        .await?;
    println!(
        "installed {} ({} bytes, sha256 {sha}) in slot {} as {} (version {}) in {:.1}s; it is tried once at the next boot",
        file.display(),
        data.len(),
        done.slot,
        done.file,
        done.version,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A duration in microseconds, readable: `3.18s`, `12.4ms`, `85µs`.
pub fn human_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// The status for people: a summary line, the stages, the services.
pub fn status_text(s: &system::StatusResponse) -> String {
    let ready = if s.ready {
        human_us(s.ready_us)
    } else {
        "not yet".into()
    };
    let mut out = format!(
        "berth-init {}  uptime {}  boot-to-ready {}  init RSS {}  log {} held, {} dropped\n\n",
        s.version,
        human_us(s.uptime_us),
        ready,
        human_bytes(s.init_rss_bytes),
        human_bytes(s.log_bytes),
        s.log_dropped
    );
    let rows: Vec<Vec<String>> = s
        .stages
        .iter()
        .map(|st| {
            let duration = if st.done {
                human_us(st.duration_us)
            } else {
                "running".into()
            };
            vec![
                st.name.clone(),
                format!("{:.6}", st.start_us as f64 / 1e6),
                duration,
            ]
        })
        .collect();
    out.push_str(&table(&["STAGE", "START", "DURATION"], &rows));
    out.push('\n');
    if s.services_known {
        let rows: Vec<Vec<String>> = s
            .services
            .iter()
            .map(|sv| {
                let pid = if sv.pid > 0 {
                    sv.pid.to_string()
                } else {
                    "-".into()
                };
                vec![
                    sv.name.clone(),
                    sv.state.clone(),
                    pid,
                    sv.restarts.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["SERVICE", "STATE", "PID", "RESTARTS"], &rows));
    } else {
        out.push_str("services: not reported by this berth-init (supervisor not connected to the control API)\n");
    }
    if let Some(boot) = s.boot.as_ref().filter(|b| b.uefi) {
        out.push_str(&format!(
            "\nboot: firmware {:?}, loader {:?}, stub {:?}, entry {:?}\nlast boot: {}\n",
            boot.firmware, boot.loader, boot.stub, boot.selected, boot.outcome
        ));
        let rows: Vec<Vec<String>> = boot
            .slots
            .iter()
            .map(|sl| {
                let state = if sl.bad {
                    "bad (tries used up)"
                } else if sl.trial {
                    "trial"
                } else {
                    "good"
                };
                vec![
                    sl.slot.clone(),
                    sl.generation.to_string(),
                    sl.version.clone(),
                    state.into(),
                    if sl.booted { "yes" } else { "" }.into(),
                    sl.file.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["SLOT", "GEN", "VERSION", "STATE", "BOOTED", "FILE"],
            &rows,
        ));
    }
    out
}

fn status_json(s: &system::StatusResponse) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "uptime_us": s.uptime_us,
        "ready": s.ready,
        "ready_us": s.ready.then_some(s.ready_us),
        "init_rss_bytes": s.init_rss_bytes,
        "log_bytes": s.log_bytes,
        "log_dropped": s.log_dropped,
        "stages": s.stages.iter().map(|st| serde_json::json!({
            "name": st.name,
            "start_us": st.start_us,
            "duration_us": st.done.then_some(st.duration_us),
        })).collect::<Vec<_>>(),
        "services_known": s.services_known,
        "services": s.services.iter().map(|sv| serde_json::json!({
            "name": sv.name,
            "state": sv.state,
            "pid": (sv.pid > 0).then_some(sv.pid),
            "restarts": sv.restarts,
        })).collect::<Vec<_>>(),
        "boot": s.boot.as_ref().filter(|b| b.uefi).map(|b| serde_json::json!({
            "firmware": b.firmware,
            "loader": b.loader,
            "stub": b.stub,
            "selected": b.selected,
            "outcome": b.outcome,
            "slots": b.slots.iter().map(|sl| serde_json::json!({
                "slot": sl.slot,
                "generation": sl.generation,
                "version": sl.version,
                "booted": sl.booted,
                "trial": sl.trial,
                "bad": sl.bad,
                "file": sl.file,
            })).collect::<Vec<_>>(),
        })),
    })
}

/// One record as a line: `[    3.177726] daemon.info berthd[12]: message`.
pub fn record_line(r: &system::LogRecord) -> String {
    let fac = FACILITIES.get(r.facility as usize).copied().unwrap_or("?");
    let sev = SEVERITIES.get(r.severity as usize).copied().unwrap_or("?");
    let pid = if r.pid > 0 {
        format!("[{}]", r.pid)
    } else {
        String::new()
    };
    format!(
        "[{:5}.{:06}] {fac}.{sev} {}{pid}: {}",
        r.uptime_us / 1_000_000,
        r.uptime_us % 1_000_000,
        r.name,
        r.message
    )
}

fn print_record(r: &system::LogRecord, format: Format) {
    if format == Format::Json {
        let v = serde_json::json!({
            "seq": r.seq,
            "time_us": r.time_us,
            "uptime_us": r.uptime_us,
            "facility": FACILITIES.get(r.facility as usize).copied(),
            "severity": SEVERITIES.get(r.severity as usize).copied(),
            "origin": r.origin,
            "name": r.name,
            "pid": (r.pid > 0).then_some(r.pid),
            "message": r.message,
        });
        println!("{v}");
    } else {
        println!("{}", record_line(r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines() {
        let r = system::LogRecord {
            uptime_us: 3_177_726,
            facility: 3,
            severity: 6,
            name: "berthd".into(),
            pid: 12,
            message: "serving".into(),
            ..Default::default()
        };
        assert_eq!(
            record_line(&r),
            "[    3.177726] daemon.info berthd[12]: serving"
        );
    }

    #[test]
    fn status_table_shows_stages_and_ready() {
        let s = system::StatusResponse {
            version: "0.1.0".into(),
            uptime_us: 12_000_000,
            ready: true,
            ready_us: 3_180_000,
            stages: vec![
                system::Stage {
                    name: "mounts".into(),
                    start_us: 1_000_000,
                    duration_us: 3100,
                    done: true,
                    ..Default::default()
                },
                system::Stage {
                    name: "modules".into(),
                    start_us: 1_010_000,
                    ..Default::default()
                },
            ],
            init_rss_bytes: 2 * 1024 * 1024,
            ..Default::default()
        };
        let text = status_text(&s);
        assert!(
            text.starts_with(
                "berth-init 0.1.0  uptime 12.00s  boot-to-ready 3.18s  init RSS 2.0 MiB"
            ),
            "{text}"
        );
        assert!(text.contains("mounts   1.000000  3.1ms\n"), "{text}");
        assert!(text.contains("modules  1.010000  running\n"), "{text}");
        assert!(text.contains("services: not reported"), "{text}");
        assert_eq!(human_us(85), "85µs");
    }
}
