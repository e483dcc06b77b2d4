//! `berthctl tasks metrics ID`: a task's cgroup statistics — memory, CPU, pids, io (Tasks
//! service, `Metrics`) — as `METRIC VALUE` rows, or as JSON with the message's field names.

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, table, Format};

/// `tasks metrics` arguments.
#[derive(Debug, clap::Args)]
pub struct MetricsArgs {
    #[arg(long, value_parser = Format::undescribed(), default_value_t = Format::Table)]
    format: Format,
    id: String,
}

/// Prints the statistics.
pub async fn run(g: &Globals, a: MetricsArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::MetricsRequest {
        container_id: a.id,
        ..Default::default()
    };
    let m = berthd
        .tasks()
        .metrics(berthd.ctx(), &req)
        .await
        .map_err(Error::call("metrics"))?;
    let j = metrics_json(&m);
    if a.format == Format::Json {
        print_json(&j);
    } else {
        print!("{}", metrics_table(&j));
    }
    Ok(())
}

/// The statistics as JSON: the same field names as the message.
fn metrics_json(m: &pb::MetricsResponse) -> serde_json::Value {
    let mem = m.memory.clone().into_option().unwrap_or_default();
    let cpu = m.cpu.clone().into_option().unwrap_or_default();
    let pids = m.pids.clone().into_option().unwrap_or_default();
    let stat: std::collections::BTreeMap<_, _> = mem.stat.iter().collect();
    serde_json::json!({
        "container_id": m.container_id,
        "timestamp": m.timestamp,
        "cgroup_version": m.cgroup_version,
        "cgroup_path": m.cgroup_path,
        "memory": {"usage": mem.usage, "peak": mem.peak, "limit": mem.limit, "stat": stat},
        "cpu": {"usage_usec": cpu.usage_usec, "user_usec": cpu.user_usec,
                "system_usec": cpu.system_usec, "nr_periods": cpu.nr_periods,
                "nr_throttled": cpu.nr_throttled, "throttled_usec": cpu.throttled_usec},
        "pids": {"current": pids.current, "limit": pids.limit},
        "io": m.io.iter().map(|i| serde_json::json!({"major": i.major, "minor": i.minor,
            "rbytes": i.rbytes, "wbytes": i.wbytes, "rios": i.rios, "wios": i.wios}))
            .collect::<Vec<_>>(),
    })
}

/// The table form: one `METRIC VALUE` row per figure of the JSON form.
fn metrics_table(j: &serde_json::Value) -> String {
    let mut rows = Vec::new();
    for (k, v) in [
        ("cgroup", &j["cgroup_path"]),
        ("cgroup_version", &j["cgroup_version"]),
    ] {
        rows.push(vec![
            k.to_owned(),
            v.to_string().trim_matches('"').to_owned(),
        ]);
    }
    for group in ["memory", "cpu", "pids"] {
        if let Some(o) = j[group].as_object() {
            for (k, v) in o {
                if let Some(stat) = v.as_object() {
                    for (sk, sv) in stat {
                        rows.push(vec![format!("{group}.{k}.{sk}"), sv.to_string()]);
                    }
                } else {
                    rows.push(vec![format!("{group}.{k}"), v.to_string()]);
                }
            }
        }
    }
    for d in j["io"].as_array().into_iter().flatten() {
        let dev = format!("io.{}:{}", d["major"], d["minor"]);
        for k in ["rbytes", "wbytes", "rios", "wios"] {
            rows.push(vec![format!("{dev}.{k}"), d[k].to_string()]);
        }
    }
    table(&["METRIC", "VALUE"], &rows)
}
