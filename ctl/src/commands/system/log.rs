//! `berthctl system log`: init's log ring — kernel, `/dev/log`, services and init itself —
//! filtered by severity and source (System service, `Log`; with `-f`, `FollowLog`, a stream
//! of new records). One line per record, or one JSON object per line.

use berth_api::proto::system as pb;

use crate::connect::Init;
use crate::error::Error;
use crate::output::Format;

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

/// `system log` arguments.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
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
    #[arg(long, value_parser = Format::described(), default_value_t = Format::Table)]
    format: Format,
}

/// Prints the records (and, with `-f`, new ones until init ends the stream).
pub(super) async fn run(init: &Init, a: LogArgs) -> Result<(), Error> {
    let req = pb::LogRequest {
        lines: a.lines,
        min_severity: a.min_severity,
        source: a.source,
        ..Default::default()
    };
    if !a.follow {
        let r = init.call("Log", init.client.log(init.ctx(), &req)).await?;
        for record in &r.records {
            print_record(record, a.format);
        }
        return Ok(());
    }
    // No deadline: the stream lasts as long as we follow.
    let ctx = ttrpc::context::Context::default();
    let mut stream = init
        .call("FollowLog", init.client.follow_log(ctx, &req))
        .await?;
    loop {
        match stream.recv().await {
            Ok(Some(r)) => print_record(&r, a.format),
            Ok(None) | Err(ttrpc::Error::Eof) => return Ok(()),
            Err(source) => return Err(init.stream_error("FollowLog", source)),
        }
    }
}

/// One record as a line: `[    3.177726] daemon.info berthd[12]: message`.
fn record_line(r: &pb::LogRecord) -> String {
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

/// A record as a line, or as one line of JSON.
fn print_record(r: &pb::LogRecord, format: Format) {
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
        let r = pb::LogRecord {
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
}
