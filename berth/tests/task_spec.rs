//! Containers created through the API with a whole OCI spec, the way berth-cri makes them, as
//! root on the host: the spec's cgroup (kubelet's parent) honoured by the executor, the pids
//! listing, metrics and cleanup; a task start that fails after the executor created the
//! container leaves nothing behind; the CRI log format and its reopening; the OOM flag on
//! the exit; a bidirectional volume's mounts reach the host. Skipped with a printed reason
//! when not root or without busybox.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_api::proto::{containers as cpb, containers_ttrpc, tasks as tpb, tasks_ttrpc};
use berth_engine::tasks::spec;
use berth_test_support::support::{self, berthctl, berthctl_ok, is_root, start_berthd, Berthd};

struct Env {
    dir: tempfile::TempDir,
    d: Option<Berthd>,
    rt: tokio::runtime::Runtime,
    containers: containers_ttrpc::ContainersClient,
    tasks: tasks_ttrpc::TasksClient,
}

fn ctx() -> ttrpc::context::Context {
    berth_api::keys::context("default", Duration::from_secs(60))
}

impl Env {
    fn socket(&self) -> PathBuf {
        self.d.as_ref().unwrap().socket.clone()
    }

    fn ctl(&self, args: &[&str]) -> String {
        berthctl_ok(&self.socket(), args)
    }

    /// A busybox container `id` running `args` with `edit` applied to berthd's generated spec.
    fn create(&self, id: &str, args: &[&str], edit: impl FnOnce(&mut serde_json::Value)) {
        let opts = spec::Options {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let bytes = spec::generate("default", id, None, &opts).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        edit(&mut v);
        let req = cpb::CreateContainerRequest {
            container: Some(cpb::Container {
                id: id.to_owned(),
                image: "busybox".into(),
                spec: serde_json::to_vec(&v).unwrap(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.rt
            .block_on(self.containers.create(ctx(), &req))
            .unwrap();
    }

    fn create_task(&self, r: tpb::CreateTaskRequest) -> ttrpc::Result<u32> {
        Ok(self.rt.block_on(self.tasks.create(ctx(), &r))?.pid)
    }

    fn start(&self, id: &str) -> ttrpc::Result<u32> {
        let r = tpb::StartRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        Ok(self.rt.block_on(self.tasks.start(ctx(), &r))?.pid)
    }

    fn wait(&self, id: &str) -> tpb::WaitResponse {
        let r = tpb::WaitRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        self.rt.block_on(self.tasks.wait(ctx(), &r)).unwrap()
    }

    fn get(&self, id: &str) -> tpb::Process {
        let r = tpb::GetRequest {
            container_id: id.to_owned(),
            ..Default::default()
        };
        let p = self.rt.block_on(self.tasks.get(ctx(), &r)).unwrap();
        p.process.into_option().unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(d) = &self.d {
            let s = d.socket.clone();
            let ls = berthctl(&s, &["tasks", "ls"]);
            for line in String::from_utf8_lossy(&ls.stdout).lines().skip(1) {
                if let Some(id) = line.split_whitespace().next() {
                    let _ = berthctl(&s, &["tasks", "kill", "-s", "KILL", "--all", id]);
                    std::thread::sleep(Duration::from_millis(50));
                    let _ = berthctl(&s, &["tasks", "rm", id]);
                }
            }
            let ls = berthctl(&s, &["containers", "ls", "-q"]);
            for id in String::from_utf8_lossy(&ls.stdout).lines() {
                let _ = berthctl(&s, &["containers", "rm", id]);
            }
        }
        self.d = None;
        berth_test_support::host::unmount_below(self.dir.path());
    }
}

fn setup() -> Option<Env> {
    if !is_root() {
        eprintln!("SKIP: task spec tests need root");
        return None;
    }
    if !Path::new(support::BUSYBOX).exists() {
        eprintln!("SKIP: {} missing (Debian busybox-static)", support::BUSYBOX);
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = start_berthd(dir.path());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inner = rt
        .block_on(berth_api::client::connect(
            &d.socket.display().to_string(),
            Duration::from_secs(10),
        ))
        .unwrap();
    let env = Env {
        containers: containers_ttrpc::ContainersClient::new(inner.clone()),
        tasks: tasks_ttrpc::TasksClient::new(inner),
        rt,
        d: Some(d),
        dir,
    };
    let path = env.dir.path().join("busybox.tar");
    std::fs::write(&path, support::busybox_archive()).unwrap();
    env.ctl(&["images", "import", path.to_str().unwrap()]);
    Some(env)
}

/// The directories of cgroup `rel` in every mounted hierarchy.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut v = vec![root.join(rel)];
    v.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(rel)),
    );
    v.into_iter().filter(|p| p.is_dir()).collect()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// kubelet's cgroupfs parent through `linux.cgroupsPath`: the container's processes are
/// there, pids and metrics read it, and the container's cgroup (not the parent, kubelet's)
/// goes with the task.
#[test]
fn the_specs_cgroup_parent_is_honoured() {
    let Some(env) = setup() else { return };
    let parent = format!("berth-test-kubepods-{}", std::process::id());
    let cgroup = format!("/{parent}/podu1/cg");
    env.create("cg", &["sleep", "1000"], |v| {
        v["linux"]["cgroupsPath"] = cgroup.clone().into();
    });
    env.create_task(tpb::CreateTaskRequest {
        container_id: "cg".into(),
        ..Default::default()
    })
    .unwrap();
    let pid = env.start("cg").unwrap();
    let dirs = cgroup_dirs(cgroup.trim_start_matches('/'));
    assert!(!dirs.is_empty(), "no hierarchy has {cgroup}");
    for d in &dirs {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        if d.join("cgroup.procs").exists() && !procs.is_empty() {
            assert!(
                procs.lines().any(|l| l.trim() == pid.to_string()),
                "{}: {procs}",
                d.display()
            );
        }
    }
    let own = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&own).unwrap();
    assert!(text.contains(&cgroup), "{own}: {text}");
    let ps = env.ctl(&["tasks", "ps", "cg"]);
    assert!(ps.contains(&pid.to_string()), "{ps}");
    let m: serde_json::Value =
        serde_json::from_str(&env.ctl(&["tasks", "metrics", "cg", "--format", "json"])).unwrap();
    assert_eq!(m["cgroup_path"], cgroup.as_str(), "{m}");
    assert!(m["memory"]["usage"].as_u64().unwrap_or(0) > 0, "{m}");
    env.ctl(&["tasks", "kill", "-s", "KILL", "cg"]);
    env.wait("cg");
    env.ctl(&["tasks", "rm", "cg"]);
    let left = cgroup_dirs(cgroup.trim_start_matches('/'));
    let own_left = cgroup_dirs("containers.slice/default-cg");
    for d in cgroup_dirs(&parent).iter().rev() {
        let _ = std::fs::remove_dir(d.join("podu1"));
        let _ = std::fs::remove_dir(d);
    }
    assert!(left.is_empty(), "container cgroups left: {left:?}");
    assert!(own_left.is_empty(), "berthd's cgroups left: {own_left:?}");
}

/// Whether any process is in a cgroup whose path contains `needle`.
fn processes_in(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(c) = std::fs::read_to_string(e.path().join("cgroup")) {
            if c.contains(needle) {
                out.push(name);
            }
        }
    }
    out
}

/// A shim that fails after the executor created the container (here: its socket path is
/// taken) ends the waiting init itself; one that dies there (failpoint `shim.after_create`,
/// SIGKILL) leaves it to berthd, which kills what is in the container's cgroup. Either way
/// no process, cgroup or mount is left, and the task can be created again.
#[test]
fn a_failed_task_start_leaves_no_init_behind() {
    let Some(mut env) = setup() else { return };
    env.create("fs", &["sleep", "1000"], |_| {});
    let sock =
        berth_engine::tasks::shim_socket::path(&env.dir.path().join("state"), "default", "fs");
    std::fs::create_dir_all(sock.join("blocker")).unwrap();
    let req = || tpb::CreateTaskRequest {
        container_id: "fs".into(),
        ..Default::default()
    };
    let e = env.create_task(req()).unwrap_err().to_string();
    println!("task create with the socket path taken: {e}");
    assert!(e.contains("listen"), "{e}");
    let check = |what: &str| {
        let procs = processes_in("containers.slice/default-fs/");
        assert!(
            procs.is_empty(),
            "{what}: processes left in the container's cgroup: {procs:?}"
        );
        let dirs = cgroup_dirs("containers.slice/default-fs");
        assert!(dirs.is_empty(), "{what}: cgroups left: {dirs:?}");
        let bundle = env.dir.path().join("state/shims/default/fs");
        assert!(!bundle.exists(), "{what}: bundle left");
    };
    check("socket taken");
    std::fs::remove_dir_all(&sock).unwrap();

    // The same through a shim killed after the create: berthd cleans up.
    let socket = env.socket();
    drop(env.d.take());
    env.d = Some(
        support::try_start_berthd_with(env.dir.path(), &[("BERTH_FAILPOINT", "shim.after_create")])
            .unwrap(),
    );
    assert_eq!(socket, env.socket());
    let inner = env
        .rt
        .block_on(berth_api::client::connect(
            &socket.display().to_string(),
            Duration::from_secs(10),
        ))
        .unwrap();
    env.tasks = tasks_ttrpc::TasksClient::new(inner);
    let e = env.create_task(req()).unwrap_err().to_string();
    println!("task create with the shim killed after the executor: {e}");
    check("shim killed");

    drop(env.d.take());
    env.d = Some(start_berthd(env.dir.path()));
    let inner = env
        .rt
        .block_on(berth_api::client::connect(
            &socket.display().to_string(),
            Duration::from_secs(10),
        ))
        .unwrap();
    env.tasks = tasks_ttrpc::TasksClient::new(inner);
    env.create_task(req()).unwrap();
    env.start("fs").unwrap();
    env.ctl(&["tasks", "kill", "-s", "KILL", "fs"]);
    env.wait("fs");
    env.ctl(&["tasks", "rm", "fs"]);
}

/// A container killed by the OOM killer: its exit says so through Wait and Get (CRI's
/// `reason = OOMKilled`), one that exits by itself does not.
#[test]
fn the_oom_killer_is_on_the_exit() {
    let Some(env) = setup() else { return };
    // The shell doubles a string until the 8 MiB limit stops it.
    env.create(
        "oom",
        &["sh", "-c", "a=x; while true; do a=$a$a; done"],
        |v| {
            v["linux"]["resources"]["memory"] =
                serde_json::json!({"limit": 8 << 20, "swap": 8 << 20});
        },
    );
    env.create("fine", &["sh", "-c", "exit 3"], |_| {});
    for id in ["oom", "fine"] {
        env.create_task(tpb::CreateTaskRequest {
            container_id: id.into(),
            ..Default::default()
        })
        .unwrap();
        env.start(id).unwrap();
    }
    let w = env.wait("oom");
    println!("oom: exit {} oom_killed {}", w.exit_status, w.oom_killed);
    assert_eq!(w.exit_status, 137);
    assert!(w.oom_killed);
    let p = env.get("oom");
    assert_eq!((p.status.as_str(), p.oom_killed), ("stopped", true));
    let w = env.wait("fine");
    assert_eq!((w.exit_status, w.oom_killed), (3, false));
    assert!(!env.get("fine").oom_killed);
    for id in ["oom", "fine"] {
        env.ctl(&["tasks", "rm", id]);
    }
}

/// The init's output in kubelet's CRI format at the task's log path, partial last line
/// included; kubelet's rotation (rename, then ReopenContainerLog → Tasks.ReopenLog) moves
/// the next lines to a new file; a task without a log path has nothing to reopen.
#[test]
fn the_cri_log_and_its_reopening() {
    let Some(env) = setup() else { return };
    let logs = env.dir.path().join("pods/p1");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("short.log");
    env.create(
        "short",
        &["sh", "-c", "echo one; echo two >&2; echo; echo -n three"],
        |_| {},
    );
    env.create_task(tpb::CreateTaskRequest {
        container_id: "short".into(),
        log_path: log.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    env.start("short").unwrap();
    env.wait("short");
    let parse = |path: &Path| -> Vec<(String, String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(4, ' ').collect();
                assert!(f[0].ends_with('Z') && f[0].contains('T'), "{l}");
                (
                    f[1].to_owned(),
                    f[2].to_owned(),
                    f.get(3).unwrap_or(&"").to_string(),
                )
            })
            .collect()
    };
    wait_until("the last line", || parse(&log).len() == 4);
    let mut got = parse(&log);
    println!("{}", std::fs::read_to_string(&log).unwrap());
    // stdout and stderr are copied by two threads: order within a stream only.
    got.sort();
    let want = [
        ("stderr", "F", "two"),
        ("stdout", "F", ""),
        ("stdout", "F", "one"),
        ("stdout", "F", "three"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
    env.ctl(&["tasks", "rm", "short"]);

    let log = logs.join("counter.log");
    env.create(
        "counter",
        &[
            "sh",
            "-c",
            "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done",
        ],
        |_| {},
    );
    env.create_task(tpb::CreateTaskRequest {
        container_id: "counter".into(),
        log_path: log.display().to_string(),
        ..Default::default()
    })
    .unwrap();
    env.start("counter").unwrap();
    wait_until("a few lines", || parse(&log).len() >= 3);
    let rotated = logs.join("counter.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let r = tpb::ReopenLogRequest {
        container_id: "counter".into(),
        ..Default::default()
    };
    env.rt.block_on(env.tasks.reopen_log(ctx(), &r)).unwrap();
    wait_until("lines in the new file", || parse(&log).len() >= 3);
    // No gap across the rotation: the counter goes on from the old file to the new.
    let old: Vec<u64> = parse(&rotated)
        .iter()
        .map(|e| e.2.parse().unwrap())
        .collect();
    let new: Vec<u64> = parse(&log).iter().map(|e| e.2.parse().unwrap()).collect();
    assert_eq!(new[0], old.last().unwrap() + 1, "{old:?} {new:?}");
    env.ctl(&["tasks", "kill", "-s", "KILL", "counter"]);
    env.wait("counter");
    env.ctl(&["tasks", "rm", "counter"]);

    env.create("nolog", &["sleep", "1000"], |_| {});
    env.create_task(tpb::CreateTaskRequest {
        container_id: "nolog".into(),
        ..Default::default()
    })
    .unwrap();
    let r = tpb::ReopenLogRequest {
        container_id: "nolog".into(),
        ..Default::default()
    };
    let e = env
        .rt
        .block_on(env.tasks.reopen_log(ctx(), &r))
        .unwrap_err();
    assert!(e.to_string().contains("FAILED_PRECONDITION"), "{e}");
    env.ctl(&["tasks", "kill", "-s", "KILL", "nolog"]);
}

/// kubelet's `Bidirectional` mount propagation (CSI drivers; critest's "rshared" spec): a
/// mount the container makes under an `rshared` volume reaches the node. The shim seals
/// its binary in a mount namespace of its own (a slave of the host's) and returns to
/// berthd's before creating the container; a container cloned from the slave copy could not
/// propagate anything back.
#[test]
fn a_bidirectional_volume_propagates_to_the_host() {
    let Some(env) = setup() else { return };
    let vol = env.dir.path().join("vol");
    std::fs::create_dir_all(vol.join("inner")).unwrap();
    let v = vol.display().to_string();
    // A shared mount on the host side (the test host's `/` may be private).
    berth_test_support::host::run(std::process::Command::new("mount").args(["--bind", &v, &v]))
        .unwrap();
    berth_test_support::host::run(std::process::Command::new("mount").args(["--make-shared", &v]))
        .unwrap();
    env.create(
        "bidi",
        &[
            "sh",
            "-c",
            "mount -t tmpfs bidi /vol/inner && touch /vol/inner/made && sleep 1000",
        ],
        |s| {
            s["mounts"].as_array_mut().unwrap().push(serde_json::json!({
                "destination": "/vol", "type": "bind", "source": v,
                "options": ["rbind", "rshared", "rw"]
            }));
            // libcontainer's "shared" is recursive (it refuses runc's "rshared").
            s["linux"]["rootfsPropagation"] = serde_json::json!("shared");
            let caps = serde_json::json!(["CAP_SYS_ADMIN"]);
            for set in ["bounding", "effective", "permitted"] {
                s["process"]["capabilities"][set] = caps.clone();
            }
            s["linux"].as_object_mut().unwrap().remove("seccomp");
        },
    );
    env.create_task(tpb::CreateTaskRequest {
        container_id: "bidi".into(),
        ..Default::default()
    })
    .unwrap();
    env.start("bidi").unwrap();
    let made = vol.join("inner/made");
    wait_until("the container's mount on the host", || made.exists());
    env.ctl(&["tasks", "kill", "-s", "KILL", "bidi"]);
    env.wait("bidi");
    env.ctl(&["tasks", "rm", "bidi"]);
    let _ =
        berth_test_support::host::run(std::process::Command::new("umount").arg(vol.join("inner")));
    let _ = berth_test_support::host::run(std::process::Command::new("umount").arg(&v));
}
