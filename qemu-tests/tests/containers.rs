//! Containers in a booted guest (our kernel, pure cgroup v2): boot containers and their
//! restart policy, cgroup v2 limits (memory/OOM, pids, cpu), and containers surviving a
//! SIGKILLed berthd (docs/containers.md).
//!
//! One boot of a test-image variant whose berthd.toml adds boot containers to the default
//! demo one, with the kernel command line making init wait 6 s before restarting berthd (so
//! containers can exit while it is down). Containers are driven with the guest's own
//! berthctl through the test agent (the host's single API bridge stays free for one
//! `berthctl events` stream). Needs `make static image-test`; run it alone:
//! `cargo test -p berth-qemu-tests --test containers -- --test-threads=1 --nocapture`.
//! Durations are printed, never asserted beyond the hang guards.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_qemu_tests::image::VariantBuilder;
use berth_qemu_tests::protocol::RunOutput;
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{AgentClient, Vm};

const READY: &str = r"berth-init: berth ready";
/// The demo image every default and test image preloads.
const IMAGE: &str = berth_layout::paths::DEMO_IMAGE;
/// berthctl inside the guest (talks to berthd's socket directly).
const CTL: &str = "/usr/bin/berthctl";
/// Task directories of the default namespace.
const SHIMS: &str = "/run/berth/shims/default";
/// Hang guard for waits on containers.
const WAIT: Duration = Duration::from_secs(360);
/// Init waits this long before restarting a dead berthd.
const BERTHD_RESTART_DELAY_MS: u64 = 6000;

/// Boot containers the scenario adds to the default `hello`, and a faster back-off.
const BOOT_CONTAINERS: &str = r#"
[[plugins."berth.boot.v1".containers]]
name = "crasher"
image = "localhost/berth/busybox:latest"
args = ["sh", "-c", "echo crasher run; exit 3"]
restart = "on-failure"
max_retries = 2

[[plugins."berth.boot.v1".containers]]
name = "keeper"
image = "localhost/berth/busybox:latest"
args = ["sleep", "3600"]
restart = "always"
"#;

fn ctl(agent: &mut AgentClient, args: &[&str]) -> Result<RunOutput> {
    let mut argv = vec![CTL];
    argv.extend_from_slice(args);
    agent
        .run_with(&argv, None, Duration::from_secs(270))
        .with_context(|| format!("berthctl {args:?} in the guest"))
}

fn ctl_ok(agent: &mut AgentClient, args: &[&str]) -> Result<RunOutput> {
    let out = ctl(agent, args)?;
    if out.status != 0 {
        bail!("berthctl {args:?} failed: {out:?}");
    }
    Ok(out)
}

fn read(agent: &mut AgentClient, path: &str) -> Result<String> {
    Ok(String::from_utf8_lossy(&agent.read_file(path)?).into_owned())
}

/// `tasks ls` rows as (id, pid, status, exit status; 0 unless stopped).
fn tasks(agent: &mut AgentClient) -> Result<Vec<(String, u64, String, u64)>> {
    let out = ctl_ok(agent, &["tasks", "ls"])?;
    Ok(out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (id, pid, status) = (f.first()?, f.get(1)?.parse().ok()?, f.get(2)?);
            let exit = f.get(3).and_then(|e| e.parse().ok()).unwrap_or(0);
            Some((id.to_string(), pid, status.to_string(), exit))
        })
        .collect())
}

fn task(agent: &mut AgentClient, id: &str) -> Result<Option<(u64, String, u64)>> {
    Ok(tasks(agent)?
        .into_iter()
        .find(|t| t.0 == id)
        .map(|t| (t.1, t.2, t.3)))
}

/// berthd's records in init's log ring.
fn berthd_log(vm: &Vm) -> Result<String> {
    Ok(vm
        .berthctl_system(
            &["log", "-l", "0", "-s", "berthd"],
            Duration::from_secs(180),
        )?
        .stdout)
}

fn lines_with<'a>(text: &'a str, pat: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(pat)).collect()
}

/// `berthctl events` on the host through the API bridge, output to a file.
struct Events {
    child: Child,
    out: tempfile::NamedTempFile,
}

impl Events {
    fn start(vm: &Vm) -> Result<Self> {
        let out = tempfile::NamedTempFile::new()?;
        let child = Command::new(berth_qemu_tests::berthctl::path()?)
            .arg("--address")
            .arg(vm.api_address())
            .arg("events")
            .stdout(out.reopen()?)
            .stderr(Stdio::null())
            .spawn()?;
        Ok(Self { child, out })
    }

    fn text(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.text()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn boot_containers_limits_and_a_killed_berthd() -> Result<()> {
    let variant = VariantBuilder::new()?
        .edit("berthd.toml", |text| {
            text.replacen("backoff_initial_ms = 1000", "backoff_initial_ms = 300", 1)
                + BOOT_CONTAINERS
        })?
        .build()?;
    let spawned = Instant::now();
    let mut vm = Vm::builder("containers")
        .image(&variant.image)
        .memory_mib(512)
        .append(&format!(
            "berth.berthd.backoff_initial_ms={BERTHD_RESTART_DELAY_MS} \
             berth.berthd.backoff_max_ms={BERTHD_RESTART_DELAY_MS}"
        ))
        .spawn()?;
    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!(
        "{ready} ({:.1} s after QEMU start)",
        spawned.elapsed().as_secs_f64()
    );
    let mut agent = vm.agent()?;

    // (a) Boot containers. `hello` (the default config's demo) runs once and exits 0;
    // `crasher` exits 3 and is restarted twice (max_retries = 2), then left stopped.
    let booted = Instant::now();
    let (_, took) = vm.wait_for_ok(
        "hello and crasher done",
        WAIT,
        Duration::from_millis(500),
        |vm| {
            let hello = task(&mut agent, "hello").map_err(other)?;
            let log = berthd_log(vm).map_err(other)?;
            match hello {
                Some((_, s, 0))
                    if s == "stopped"
                        && log.contains("not restarted: 2 restarts reached max_retries = 2") =>
                {
                    Ok(())
                }
                h => Err(berth_qemu_tests::Error::AgentProtocol(format!(
                    "hello {h:?}"
                ))),
            }
        },
    )?;
    println!(
        "boot containers hello and crasher done {:.1} s after `berth ready` (waited {:.1} s)",
        booted.elapsed().as_secs_f64(),
        took.as_secs_f64()
    );
    let hello_log = read(&mut agent, &format!("{SHIMS}/hello/log"))?;
    println!("hello's log: {}", hello_log.trim());
    vm.check(
        hello_log.contains("hello from berth"),
        format!("hello's log: {hello_log:?}"),
    )?;
    let crasher = task(&mut agent, "crasher")?;
    println!("crasher task: {crasher:?}");
    vm.check(
        matches!(&crasher, Some((_, s, 3)) if s == "stopped"),
        format!("crasher: {crasher:?}"),
    )?;
    let info = ctl_ok(&mut agent, &["containers", "info", "crasher"])?.stdout;
    vm.check(
        info.contains("\"berth.boot/restarts\": \"2\""),
        format!("crasher's restart count label: {info}"),
    )?;
    let previous = read(&mut agent, "/run/berth/boot/default/crasher/previous.log")?;
    vm.check(
        previous.contains("crasher run"),
        format!("previous.log: {previous:?}"),
    )?;
    let log = berthd_log(&vm)?;
    for l in lines_with(&log, "boot container") {
        println!("berthd: {l}");
    }
    vm.check(
        lines_with(
            &log,
            "boot container \"crasher\": exited with status 3; restart",
        )
        .len()
            == 2,
        "two restarts of crasher logged",
    )?;
    let keeper = task(&mut agent, "keeper")?;
    vm.check(
        matches!(&keeper, Some((_, s, _)) if s == "running"),
        format!("keeper: {keeper:?}"),
    )?;

    // (b) Limits, with an events stream open on the host.
    let events = Events::start(&vm)?;
    std::thread::sleep(Duration::from_millis(500));
    // restart = "always": a killed keeper comes back, as an exit event and a restart event.
    let (keeper_pid, _, _) = keeper.unwrap_or_default();
    ctl_ok(&mut agent, &["tasks", "kill", "-s", "KILL", "keeper"])?;
    let (new_keeper, took) = vm.wait_for_ok(
        "keeper restarted",
        WAIT,
        Duration::from_millis(300),
        |_| match task(&mut agent, "keeper").map_err(other)? {
            Some((pid, s, _)) if s == "running" && pid != keeper_pid => Ok(pid),
            k => Err(berth_qemu_tests::Error::AgentProtocol(format!(
                "keeper {k:?}"
            ))),
        },
    )?;
    println!(
        "keeper (restart = \"always\") killed: pid {keeper_pid} -> {new_keeper} in {:.1} s",
        took.as_secs_f64()
    );

    // Memory: 64 MiB into a 32 MiB limit (tail keeps the newline-free input in memory).
    let t = Instant::now();
    let oom = ctl(
        &mut agent,
        &[
            "run",
            "--rm",
            "--name",
            "oom",
            "--memory",
            "32M",
            IMAGE,
            "sh",
            "-c",
            "head -c 67108864 /dev/zero | tail; s=$?; echo tail status $s; exit $s",
        ],
    )?;
    println!(
        "oom: status {} in {:.1} s, stdout {:?}, stderr {:?}",
        oom.status,
        t.elapsed().as_secs_f64(),
        oom.stdout.trim(),
        oom.stderr.trim()
    );
    vm.check(
        oom.stdout.contains("tail status 137") && oom.status == 137,
        format!("the allocating tail was not SIGKILLed: {oom:?}"),
    )?;

    // pids: the 21st process of the container cannot be forked.
    let t = Instant::now();
    let pids = ctl(
        &mut agent,
        &[
            "run",
            "--rm",
            "--name",
            "pids",
            "--pids-limit",
            "20",
            IMAGE,
            "sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); done; echo forked; wait",
        ],
    )?;
    println!(
        "pids: status {} in {:.1} s, stdout {:?}, stderr {:?}",
        pids.status,
        t.elapsed().as_secs_f64(),
        pids.stdout.trim(),
        pids.stderr.trim()
    );
    vm.check(
        pids.stderr.contains("fork") || pids.stdout.contains("fork"),
        format!("no fork failure under --pids-limit 20: {pids:?}"),
    )?;

    // The cgroup2 mount favours dynamic changes: container starts do not wait for an RCU
    // grace period when their first process joins its cgroup (docs/init-services.md).
    let mountinfo = read(&mut agent, "/proc/1/mountinfo")?;
    let cgroup_mount = mountinfo
        .lines()
        .find(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
        .unwrap_or_default()
        .to_owned();
    println!("cgroup2 mount: {cgroup_mount}");
    vm.check(
        cgroup_mount.contains("nsdelegate") && cgroup_mount.contains("favordynmods"),
        format!("cgroup2 not mounted with nsdelegate,favordynmods: {cgroup_mount:?}"),
    )?;

    // cpu: a busy loop under 0.2 CPUs is throttled.
    ctl_ok(
        &mut agent,
        &[
            "run",
            "-d",
            "--name",
            "cpu",
            "--cpus",
            "0.2",
            IMAGE,
            "sh",
            "-c",
            "while :; do :; done",
        ],
    )?;
    std::thread::sleep(Duration::from_secs(3));
    let cg = "/sys/fs/cgroup/containers.slice/default-cpu/init";
    let cpu_max = read(&mut agent, &format!("{cg}/cpu.max"))?;
    let cpu_stat = read(&mut agent, &format!("{cg}/cpu.stat"))?;
    println!(
        "cpu: cpu.max {:?}; cpu.stat:\n{}",
        cpu_max.trim(),
        cpu_stat.trim()
    );
    let throttled: u64 = cpu_stat
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    vm.check(
        cpu_max.trim() == "20000 100000" && throttled > 0,
        format!("cpu.max {cpu_max:?}, nr_throttled {throttled}"),
    )?;
    ctl_ok(&mut agent, &["tasks", "kill", "-s", "KILL", "cpu"])?;
    std::thread::sleep(Duration::from_millis(500));
    ctl_ok(&mut agent, &["tasks", "rm", "cpu"])?;
    ctl_ok(&mut agent, &["containers", "rm", "cpu"])?;

    std::thread::sleep(Duration::from_secs(1));
    let ev = events.stop();
    for l in ev.lines().filter(|l| {
        l.contains("/tasks/oom")
            || l.contains("/boot/restart")
            || (l.contains("/tasks/exit") && (l.contains("\"oom\"") || l.contains("keeper")))
    }) {
        println!("event: {l}");
    }
    vm.check(
        ev.lines()
            .any(|l| l.contains("/tasks/oom") && l.contains("\"container_id\":\"oom\"")),
        format!("no /tasks/oom event for oom:\n{ev}"),
    )?;
    vm.check(
        ev.lines().any(|l| {
            l.contains("/boot/restart")
                && l.contains("\"container_id\":\"keeper\"")
                && l.contains("\"exit_status\":137")
        }),
        format!("no /boot/restart event for keeper:\n{ev}"),
    )?;

    // (c) SIGKILL berthd with 10 containers running; 3 exit (codes 10, 11, 12) while it is
    // down; init restarts it after 6 s.
    let t = Instant::now();
    for i in 0..10 {
        let name = format!("live{i}");
        let script = if i < 3 {
            format!("while [ ! -e /stop ]; do sleep 1; done; exit {}", 10 + i)
        } else {
            "sleep 3600".to_string()
        };
        ctl_ok(
            &mut agent,
            &["run", "-d", "--name", &name, IMAGE, "sh", "-c", &script],
        )?;
    }
    println!(
        "10 containers started in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let before = tasks(&mut agent)?;
    let keeper_before = task(&mut agent, "keeper")?;
    let pids = agent.pidof("berthd")?;
    let &[old] = pids.as_slice() else {
        bail!("expected one berthd, found pids {pids:?}")
    };
    let killed = Instant::now();
    agent.kill(old, libc::SIGKILL)?;
    for i in 0..3 {
        agent.write_file(&format!("{SHIMS}/live{i}/rootfs/stop"), b"", None)?;
    }
    for i in 0..3 {
        let exit = format!("{SHIMS}/live{i}/exit");
        vm.wait_for_ok("an exit record", WAIT, Duration::from_millis(200), |_| {
            agent.read_file(&exit)
        })?;
    }
    let exits_recorded = killed.elapsed();
    let down = agent.pidof("berthd")?.is_empty();
    vm.check(
        down,
        "berthd was restarted before the 3 containers exited (raise BERTHD_RESTART_DELAY_MS)",
    )?;
    let (after, _) = vm.wait_for_ok("berthd back", WAIT, Duration::from_millis(300), |_| {
        tasks(&mut agent).map_err(other)
    })?;
    println!(
        "berthd pid {old} SIGKILLed; 3 exits recorded after {:.1} s while it was down; \
         answering again after {:.1} s",
        exits_recorded.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    let table = ctl_ok(&mut agent, &["tasks", "ls"])?.stdout;
    println!("tasks ls after the restart:\n{table}");
    let live: Vec<_> = after.iter().filter(|t| t.0.starts_with("live")).collect();
    let running = live.iter().filter(|t| t.2 == "running").count();
    let stopped: Vec<(String, u64)> = live
        .iter()
        .filter(|t| t.2 == "stopped")
        .map(|t| (t.0.clone(), t.3))
        .collect();
    println!("{running} running; stopped with exit codes: {stopped:?}");
    vm.check(
        running == 7
            && stopped
                == [
                    ("live0".to_string(), 10),
                    ("live1".to_string(), 11),
                    ("live2".to_string(), 12),
                ],
        format!("before: {before:?}\nafter: {after:?}"),
    )?;
    for t in live.iter().filter(|t| t.2 == "running") {
        let was = before.iter().find(|b| b.0 == t.0).map(|b| b.1);
        vm.check(
            was == Some(t.1),
            format!("{} changed pid: {was:?} -> {}", t.0, t.1),
        )?;
    }
    let exec = ctl(
        &mut agent,
        &["tasks", "exec", "live5", "echo", "still here"],
    )?;
    vm.check(
        exec.status == 0 && exec.stdout.contains("still here"),
        format!("exec into a re-adopted container: {exec:?}"),
    )?;
    // The boot container running under its shim was re-adopted, not started a second time.
    let keeper_after = task(&mut agent, "keeper")?;
    println!("keeper before {keeper_before:?}, after {keeper_after:?}");
    vm.check(
        keeper_after == keeper_before,
        format!("keeper: {keeper_before:?} -> {keeper_after:?}"),
    )?;
    let log = berthd_log(&vm)?;
    let adopted = lines_with(
        &log,
        "boot container \"keeper\": already running under its shim",
    );
    println!("berthd: {adopted:?}");
    vm.check(adopted.len() == 1, "keeper's re-adoption not logged")?;
    let exit_lines = lines_with(&log, "its container's exit was recorded");
    for l in &exit_lines {
        println!("berthd: {l}");
    }
    println!(
        "containers scenario: {:.1} s from QEMU start",
        spawned.elapsed().as_secs_f64()
    );
    Ok(())
}

fn other(e: anyhow::Error) -> berth_qemu_tests::Error {
    berth_qemu_tests::Error::AgentProtocol(format!("{e:#}"))
}
