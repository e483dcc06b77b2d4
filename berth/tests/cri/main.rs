//! berth-cri judged by Kubernetes' own tools, as root on the host: the crictl walkthrough an
//! operator types (phase 1: runtime info, images, pod sandboxes with CNI), and critest
//! focused on what phase 1 implements (`#[ignore]`d: minutes long; run with
//! `cargo test -p berth --test cri -- --ignored --nocapture critest`).
//!
//! Everything runs inside a network namespace the test creates; crictl and critest come from
//! scripts/build-cri-tools.sh's cache (built by it when missing; the test skips visibly when
//! that fails). Skipped with the reason when not root or without the host tools.

mod critest;
mod env;
mod walk_containers;

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use anyhow::Result;
use serde_json::Value;

use berth_test_support::registry::{busybox_layout_full, push_layout};

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The files host-local keeps per leased IP in its lease directory (besides `lock` and
/// `last_reserved_ip.*`).
fn leases(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = f.file_name().to_string_lossy().into_owned();
            if n.parse::<std::net::IpAddr>().is_ok() {
                out.push(n);
            }
        }
    }
    out
}

/// Cgroup directories named `name` under `containers.slice` of any hierarchy (v2 or v1).
fn glob_cgroups(name: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.to_owned()];
    dirs.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    dirs.into_iter()
        .map(|d| d.join("containers.slice").join(name))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn crictl_walkthrough() -> Result<()> {
    let Some(mut env) = env::setup("walk")? else {
        return Ok(());
    };
    let t0 = Instant::now();
    let layout = busybox_layout_full(&env.path("busybox"))?;
    push_layout(
        &layout,
        "v1",
        &format!("{}/library/busybox:v1", env.registry.addr),
        None,
        Some(&env.netns.0),
    )?;

    // Runtime info.
    let v = env.crictl_ok(&["version"]);
    println!("{v}");
    assert!(v.contains("RuntimeName:  berth"), "{v}");
    assert!(v.contains("RuntimeApiVersion:  v1"), "{v}");
    let info = json(&env.crictl_ok(&["info"]));
    let conds = info["status"]["conditions"].as_array().unwrap();
    for c in conds {
        println!("condition {} = {} {}", c["type"], c["status"], c["message"]);
        assert_eq!(c["status"], true, "{c}");
    }
    assert!(info["cniconfig"].to_string().contains("bridge"), "{info}");
    let rc = env.crictl_ok(&["runtime-config"]);
    assert!(rc.to_lowercase().contains("cgroupfs"), "{rc}");

    // Images through the mirror-only certs.d.
    let out = env.crictl_ok(&["pull", "busybox:v1"]);
    println!("{out}");
    assert!(out.contains("Image is up to date for sha256:"), "{out}");
    let images = env.crictl_ok(&["images"]);
    println!("{images}");
    assert!(
        images.contains("docker.io/library/busybox") && images.contains("v1"),
        "{images}"
    );
    let records = env.berthctl(&["images", "ls"]);
    assert!(
        records.contains("docker.io/library/busybox:v1"),
        "berthctl -n k8s.io images ls:\n{records}"
    );
    let st = json(&env.crictl_ok(&["inspecti", "busybox:v1"]));
    let id = st["status"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sha256:"), "{st}");
    assert!(
        st["status"]["size"]
            .as_str()
            .unwrap_or("0")
            .parse::<u64>()?
            > 0
            || st["status"]["size"].as_u64().unwrap_or(0) > 0,
        "{st}"
    );
    assert_eq!(
        st["status"]["repoTags"],
        serde_json::json!(["docker.io/library/busybox:v1"]),
        "{st}"
    );
    let digest_ref = st["status"]["repoDigests"][0].as_str().unwrap().to_owned();
    assert!(
        digest_ref.starts_with("docker.io/library/busybox@sha256:"),
        "{st}"
    );
    // The same image by ID and by repo digest.
    assert_eq!(
        json(&env.crictl_ok(&["inspecti", &id]))["status"]["id"],
        id.as_str()
    );
    assert_eq!(
        json(&env.crictl_ok(&["inspecti", &digest_ref]))["status"]["id"],
        id.as_str()
    );
    let fs = json(&env.crictl_ok(&["imagefsinfo"]));
    println!("imagefsinfo: {fs}");
    assert!(fs.to_string().contains("mountpoint"), "{fs}");

    // A pod sandbox with its network from CNI.
    let pod = env.path("pod.json");
    let logs = env.path("pod-logs");
    // A cgroupfs parent as kubelet gives one: the pod's cgroups are made under it.
    let parent = format!("/berth-walk-{}/podwalk", std::process::id());
    std::fs::write(
        &pod,
        format!(
            r#"{{"metadata": {{"name": "walk", "namespace": "default", "uid": "walk-uid-1", "attempt": 0}},
            "hostname": "walk-pod", "log_directory": "{}", "labels": {{"app": "walk"}},
            "linux": {{"cgroup_parent": "{parent}",
                       "sysctls": {{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_unprivileged_port_start": "80"}}}}}}"#,
            logs.display()
        ),
    )?;
    let sid = env
        .crictl_ok(&["runp", pod.to_str().unwrap()])
        .trim()
        .to_owned();
    assert_eq!(sid.len(), 64, "{sid}");
    let pods = env.crictl_ok(&["pods"]);
    println!("{pods}");
    assert!(
        pods.contains(&sid[..13]) && pods.contains("Ready") && pods.contains("walk"),
        "{pods}"
    );
    let filtered = env.crictl_ok(&["pods", "-q", "--label", "app=walk", "--state", "ready"]);
    assert_eq!(filtered.trim(), sid);
    assert!(env
        .crictl_ok(&["pods", "-q", "--label", "app=other"])
        .trim()
        .is_empty());
    let p = json(&env.crictl_ok(&["inspectp", &sid]));
    let ip = p["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    println!("pod IP {ip}, state {}", p["status"]["state"]);
    assert!(ip.starts_with("10.99.0."), "{p}");
    assert_eq!(p["status"]["state"], "SANDBOX_READY", "{p}");
    let netns_path = p["info"]["netnsPath"].as_str().unwrap().to_owned();
    let pid = p["info"]["pid"].as_u64().unwrap();
    // The pause process lives in the namespace CNI configured.
    let pin = std::fs::metadata(&netns_path)?;
    let held = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    assert_eq!(
        (pin.dev(), pin.ino()),
        (held.dev(), held.ino()),
        "pause is not in the pinned netns"
    );
    assert_eq!(leases(&env.path("leases")), vec![ip.clone()]);
    // The pod's sysctls are set in its namespaces (IPC and network), and its hostname in UTS.
    for (ns, key, want) in [
        ("--ipc", "kernel/shm_rmid_forced", "1"),
        ("--net", "net/ipv4/ip_unprivileged_port_start", "80"),
    ] {
        let out = std::process::Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                ns,
                "cat",
                &format!("/proc/sys/{key}"),
            ])
            .output()?;
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{key}");
    }
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "--uts", "hostname"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "walk-pod");
    // kubelet's retry of the same RunPodSandbox gets the same sandbox.
    assert_eq!(env.crictl_ok(&["runp", pod.to_str().unwrap()]).trim(), sid);
    // berth-cri keeps nothing berthd does not have: killed and restarted, it shows the same.
    env.kill_and_restart_cri()?;
    let again = json(&env.crictl_ok(&["inspectp", &sid]));
    assert_eq!(again["status"]["state"], "SANDBOX_READY", "{again}");
    assert_eq!(again["status"]["network"]["ip"], ip.as_str(), "{again}");
    assert_eq!(again["status"]["labels"]["app"], "walk", "{again}");
    assert_eq!(env.crictl_ok(&["runp", pod.to_str().unwrap()]).trim(), sid);

    let container_cgroup = walk_containers::walk(&mut env, &sid, &pod, &logs, &parent)?;

    // Stop (twice: it is idempotent), remove.
    env.crictl_ok(&["stopp", &sid]);
    env.crictl_ok(&["stopp", &sid]);
    let p = json(&env.crictl_ok(&["inspectp", &sid]));
    assert_eq!(p["status"]["state"], "SANDBOX_NOTREADY", "{p}");
    assert!(
        leases(&env.path("leases")).is_empty(),
        "lease left after stopp"
    );
    assert!(
        !std::path::Path::new(&netns_path).exists(),
        "netns pin left after stopp"
    );
    env.crictl_ok(&["rmp", &sid]);
    assert!(env.crictl_ok(&["pods", "-q"]).trim().is_empty());
    env.crictl_ok(&["rmi", "busybox:v1"]);
    assert!(env.crictl_ok(&["images", "-q"]).trim().is_empty());

    // Nothing left: mounts, namespaces, leases, berthd containers and tasks.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")?;
    let base = env.dir.path().display().to_string();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&base)).collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    let pins: Vec<_> = std::fs::read_dir(env.path("netns"))?.flatten().collect();
    assert!(pins.is_empty(), "netns files left: {pins:?}");
    assert!(leases(&env.path("leases")).is_empty());
    assert!(env.berthctl(&["containers", "ls", "-q"]).trim().is_empty());
    assert_eq!(
        env.berthctl(&["tasks", "ls"]).lines().count(),
        1,
        "tasks left"
    );
    assert!(env.berthctl(&["images", "ls", "-q"]).trim().is_empty());
    let cgroups: Vec<_> = glob_cgroups(&format!("k8s.io-{sid}"));
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    // The sandbox's and the container's cgroups under the pod's parent are gone; the parent
    // itself is kubelet's (here the test's) to remove.
    let root = std::path::Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_owned()];
    hierarchies.extend(std::fs::read_dir(root)?.flatten().map(|e| e.path()));
    for h in &hierarchies {
        for c in [format!("{parent}/{sid}"), container_cgroup.clone()] {
            let p = h.join(c.trim_start_matches('/'));
            assert!(!p.exists(), "cgroup left: {}", p.display());
        }
    }
    for h in &hierarchies {
        let _ = std::fs::remove_dir(h.join(parent.trim_start_matches('/')));
        let _ = std::fs::remove_dir(h.join(parent.trim_start_matches('/')).parent().unwrap());
    }
    println!("walkthrough: {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// A RunPodSandbox that fails half-way (a CNI plugin failing after bridge leased an IP)
/// undoes everything and leaves the name free: the same pod runs once the network is fixed.
#[test]
fn a_failed_runp_releases_everything() -> Result<()> {
    let Some(env) = env::setup("fail")? else {
        return Ok(());
    };
    use std::os::unix::fs::PermissionsExt;
    let bin = env.path("cni-bin");
    std::fs::create_dir_all(&bin)?;
    let plugin = bin.join("berth-test-fail");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"refused by the test\"}'\nexit 1\n",
    )?;
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755))?;
    // Sorted first, so it is the pod network: the real bridge, then the failing plugin.
    let failing = env.path("net.d/00-failing.conflist");
    std::fs::write(
        &failing,
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "failing", "plugins": [
                {{"type": "bridge", "bridge": "berthfail0", "isGateway": true,
                  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.98.0.0/24"}}]], "dataDir": "{}"}}}},
                {{"type": "berth-test-fail"}}]}}"#,
            env.path("leases").display()
        ),
    )?;
    let pod = env.path("pod.json");
    std::fs::write(
        &pod,
        r#"{"metadata": {"name": "fail", "namespace": "default", "uid": "fail-uid", "attempt": 0}, "linux": {}}"#,
    )?;
    let out = env.crictl(&["runp", pod.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    println!(
        "runp through a failing plugin: {}",
        err.lines().last().unwrap_or_default()
    );
    assert!(!out.status.success());
    assert!(err.contains("refused by the test"), "{err}");
    assert!(
        leases(&env.path("leases")).is_empty(),
        "lease left by a failed runp"
    );
    let pins: Vec<_> = std::fs::read_dir(env.path("netns"))?.flatten().collect();
    assert!(pins.is_empty(), "netns left by a failed runp: {pins:?}");
    assert!(env.berthctl(&["containers", "ls", "-q"]).trim().is_empty());
    assert!(env.crictl_ok(&["pods", "-q"]).trim().is_empty());
    // Network fixed: the same name runs, here with a host port (portmap's DNAT rules live in
    // the test's namespace and go with the pod).
    std::fs::remove_file(&failing)?;
    std::fs::write(
        &pod,
        r#"{"metadata": {"name": "fail", "namespace": "default", "uid": "fail-uid", "attempt": 0},
            "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": 18080}], "linux": {}}"#,
    )?;
    let dnat = |env: &env::Env| -> Result<usize> {
        let out = env
            .netns
            .command("iptables")
            .args(["-t", "nat", "-S"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("--dport 18080"))
            .count())
    };
    let sid = env
        .crictl_ok(&["runp", pod.to_str().unwrap()])
        .trim()
        .to_owned();
    assert!(dnat(&env)? > 0, "no DNAT rule for the host port");
    env.crictl_ok(&["rmp", "-f", &sid]);
    assert_eq!(dnat(&env)?, 0, "DNAT rule left after rmp");
    assert!(leases(&env.path("leases")).is_empty());
    // A host-network pod: no namespace of its own, no CNI, no IP from CNI.
    std::fs::write(
        &pod,
        r#"{"metadata": {"name": "hostnet", "namespace": "default", "uid": "hostnet-uid", "attempt": 0},
            "linux": {"security_context": {"namespace_options": {"network": 2}}}}"#,
    )?;
    let sid = env
        .crictl_ok(&["runp", pod.to_str().unwrap()])
        .trim()
        .to_owned();
    let p = json(&env.crictl_ok(&["inspectp", &sid]));
    assert_eq!(p["status"]["state"], "SANDBOX_READY", "{p}");
    assert_eq!(p["status"]["network"]["ip"], "", "{p}");
    assert_eq!(p["info"]["netnsPath"], "", "{p}");
    let pid = p["info"]["pid"].as_u64().unwrap();
    let mine = std::fs::metadata("/proc/self/ns/net")?;
    let test_ns = std::fs::metadata(format!("/run/netns/{}", env.netns.0))?;
    let held = std::fs::metadata(format!("/proc/{pid}/ns/net"))?;
    assert_eq!(
        (held.dev(), held.ino()),
        (test_ns.dev(), test_ns.ino()),
        "a host-network pause is in berth-cri's (here the test's) namespace"
    );
    assert_ne!(held.ino(), mine.ino());
    env.crictl_ok(&["rmp", "-f", &sid]);
    assert!(env.berthctl(&["containers", "ls", "-q"]).trim().is_empty());

    // kubelet retrying a RunPodSandbox whose first call is still in CNI (a plugin that takes
    // 3 s): the retry is refused at once with the sandbox being made named, the first
    // finishes, and the next retry gets that same sandbox — nothing wedges the name.
    let slow = bin.join("slow-bridge");
    std::fs::write(
        &slow,
        "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] && sleep 3\nexec /usr/lib/cni/bridge \"$@\"\n",
    )?;
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755))?;
    let slow_net = env.path("net.d/00-slow.conflist");
    std::fs::write(
        &slow_net,
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "slow", "plugins": [
                {{"type": "slow-bridge", "bridge": "berthslow0", "isGateway": true,
                  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.97.0.0/24"}}]], "dataDir": "{}"}}}}]}}"#,
            env.path("leases").display()
        ),
    )?;
    std::fs::write(
        &pod,
        r#"{"metadata": {"name": "slow", "namespace": "default", "uid": "slow-uid", "attempt": 0}, "linux": {}}"#,
    )?;
    let first = {
        let (bin, cfg, pod) = (env.crictl_bin.clone(), env.path("crictl.yaml"), pod.clone());
        std::thread::spawn(move || {
            std::process::Command::new(bin)
                .arg("--config")
                .arg(cfg)
                .arg("runp")
                .arg(pod)
                .output()
                .expect("run crictl")
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let t = Instant::now();
    let retry = env.crictl(&["runp", pod.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&retry.stderr).into_owned();
    println!(
        "retry while the first is in CNI ({:.2}s): {}",
        t.elapsed().as_secs_f64(),
        err.lines().last().unwrap_or_default()
    );
    assert!(!retry.status.success());
    assert!(
        err.contains("AlreadyExists") && err.contains("still creating"),
        "{err}"
    );
    let out = first.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(env.crictl_ok(&["runp", pod.to_str().unwrap()]).trim(), sid);
    env.crictl_ok(&["rmp", "-f", &sid]);
    std::fs::remove_file(&slow_net)?;
    assert!(leases(&env.path("leases")).is_empty());
    assert!(env.berthctl(&["containers", "ls", "-q"]).trim().is_empty());
    Ok(())
}
