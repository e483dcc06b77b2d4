//! The container half of the crictl walkthrough: create, start, logs (kubelet's format,
//! counted with no gap across a SIGKILL of berthd and of berth-cri), exec, stats, inspect
//! (cgroup under the pod's cgroup parent), stop (timeout, then SIGKILL), rm.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use crate::env::Env;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The numbers the counter wrote, from its CRI log file (every entry a full line).
fn counted(path: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!((f.len(), f[1], f[2]), (4, "stdout", "F"), "{l}");
            f[3].parse().unwrap_or_else(|_| panic!("not a count: {l}"))
        })
        .collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the walk in sandbox `sid` (made from `pod`, whose log directory is `logs` and
/// cgroup parent `parent`); returns the container's cgroup for the leftover check.
pub fn walk(
    env: &mut Env,
    sid: &str,
    pod: &std::path::Path,
    logs: &std::path::Path,
    parent: &str,
) -> Result<String> {
    let ctr = env.path("counter.json");
    std::fs::write(
        &ctr,
        r#"{"metadata": {"name": "counter"}, "image": {"image": "busybox:v1"},
            "command": ["sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"],
            "log_path": "counter.log", "labels": {"role": "count"},
            "linux": {"resources": {"memory_limit_in_bytes": 67108864}}}"#,
    )?;
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cid = env
        .crictl_ok(
            &args(&["create", sid, ctr.to_str().unwrap(), pod.to_str().unwrap()])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .trim()
        .to_owned();
    assert_eq!(cid.len(), 64, "{cid}");
    let st = json(&env.crictl_ok(&["inspect", &cid]));
    assert_eq!(st["status"]["state"], "CONTAINER_CREATED", "{st}");
    // kubelet's retry of the same CreateContainer gets the same container while it has not
    // started.
    let again = env.crictl_ok(&["create", sid, ctr.to_str().unwrap(), pod.to_str().unwrap()]);
    assert_eq!(again.trim(), cid);
    env.crictl_ok(&["start", &cid]);
    let ps = env.crictl_ok(&["ps", "--label", "role=count"]);
    println!("{ps}");
    assert!(
        ps.contains(&cid[..13]) && ps.contains("Running") && ps.contains("counter"),
        "{ps}"
    );
    let log = logs.join("counter.log");
    wait_until("the counter's first lines", || counted(&log).len() >= 5);
    let out = env.crictl_ok(&["logs", "--tail", "3", &cid]);
    assert_eq!(out.lines().count(), 3, "{out}");

    // ExecSync: in the pod's UTS namespace, as root.
    let h = env.crictl_ok(&["exec", "-s", &cid, "hostname"]);
    assert_eq!(h.trim(), "walk-pod");
    let id = env.crictl_ok(&["exec", "-s", &cid, "id", "-u"]);
    assert_eq!(id.trim(), "0");
    let r = env.crictl(&["exec", "-s", "--timeout", "1", &cid, "sleep", "30"]);
    assert!(!r.status.success(), "exec past its timeout must fail");

    // Stats from the container's cgroup, which lives under the pod's cgroup parent.
    let stats = json(&env.crictl_ok(&["stats", "-o", "json", &cid]));
    println!("stats: {}", stats["stats"][0]["memory"]);
    let ws: u64 = stats["stats"][0]["memory"]["workingSetBytes"]["value"]
        .as_str()
        .map(|s| s.parse().unwrap())
        .or(stats["stats"][0]["memory"]["workingSetBytes"]["value"].as_u64())
        .unwrap_or(0);
    assert!(ws > 0, "{stats}");
    let pstats = env.crictl_ok(&["statsp", sid]);
    assert!(pstats.contains(&sid[..13]), "{pstats}");
    let st = json(&env.crictl_ok(&["inspect", &cid]));
    let pid = st["info"]["pid"].as_u64().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let cgroup = format!("{parent}/{cid}");
    assert!(cg.contains(&cgroup), "not in {cgroup}: {cg}");

    // Kill -9 berthd, then berth-cri: the counter counts on, its log has no gap, and both
    // come back with the same view.
    let before = counted(&log).len();
    env.kill_and_restart_berthd()?;
    wait_until("more lines after berthd's restart", || {
        counted(&log).len() > before + 5
    });
    env.kill_and_restart_cri()?;
    let ps = env.crictl_ok(&["ps", "-q"]);
    assert_eq!(ps.trim(), cid);
    let pods = env.crictl_ok(&["pods", "-q"]);
    assert_eq!(pods.trim(), sid);
    let st = json(&env.crictl_ok(&["inspect", &cid]));
    assert_eq!(st["status"]["state"], "CONTAINER_RUNNING", "{st}");
    assert_eq!(st["info"]["pid"].as_u64(), Some(pid));
    let h = env.crictl_ok(&["exec", "-s", &cid, "echo", "still here"]);
    assert_eq!(h.trim(), "still here");

    // Stop: sh ignores SIGTERM as a PID namespace's init, so the timeout passes and SIGKILL
    // ends it.
    let t = Instant::now();
    env.crictl_ok(&["stop", "-t", "1", &cid]);
    println!("stop with a 1 s timeout: {:.1}s", t.elapsed().as_secs_f64());
    let st = json(&env.crictl_ok(&["inspect", &cid]));
    assert_eq!(st["status"]["state"], "CONTAINER_EXITED", "{st}");
    assert_eq!(st["status"]["exitCode"], 137, "{st}");
    assert_eq!(st["status"]["reason"], "Error", "{st}");
    let n = counted(&log);
    assert!(n.len() > 10, "{}", n.len());
    for (i, v) in n.iter().enumerate() {
        assert_eq!(*v, i as u64, "the count has a gap at line {i}");
    }
    println!("counter: {} lines, no gap", n.len());
    env.crictl_ok(&["stop", &cid]);
    env.crictl_ok(&["rm", &cid]);
    assert!(env.crictl_ok(&["ps", "-a", "-q"]).trim().is_empty());
    Ok(cgroup)
}
