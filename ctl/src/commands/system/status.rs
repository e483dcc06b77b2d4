//! `berthctl system status`: init's view of the node (System service, `Status`) — version,
//! uptime, boot-to-ready, init's memory and log ring, the boot stages with their durations,
//! the supervised services and, on UEFI, the A/B boot slots.

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;
use crate::output::{print_json, table, Format};

/// `system status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Prints the status.
pub(super) async fn run(init: &Init, a: StatusArgs) -> Result<(), Error> {
    let s = init
        .call(
            "Status",
            init.client.status(init.ctx(), &pb::StatusRequest::new()),
        )
        .await?;
    if a.format == Format::Json {
        print_json(&status_json(&s));
    } else {
        print!("{}", status_text(&s));
    }
    Ok(())
}

/// A duration in microseconds, readable: `3.18s`, `12.4ms`, `85µs`.
fn human_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

/// init's memory figures, always in KiB or MiB (they are never a few bytes, and one unit
/// per scale keeps the summary line steady).
fn kib_or_mib(b: u64) -> String {
    if b >= 1024 * 1024 {
        format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// The status for people: a summary line, the stages, the services, the boot slots.
fn status_text(s: &pb::StatusResponse) -> String {
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
        kib_or_mib(s.init_rss_bytes),
        kib_or_mib(s.log_bytes),
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

fn status_json(s: &pb::StatusResponse) -> serde_json::Value {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table_shows_stages_and_ready() {
        let s = pb::StatusResponse {
            version: "0.1.0".into(),
            uptime_us: 12_000_000,
            ready: true,
            ready_us: 3_180_000,
            stages: vec![
                pb::Stage {
                    name: "mounts".into(),
                    start_us: 1_000_000,
                    duration_us: 3100,
                    done: true,
                    ..Default::default()
                },
                pb::Stage {
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
