//! Services, cgroups, sysctls, rlimits and the orderly shutdown of berth-init, checked from
//! inside the guest through the test agent (`docs/init-services.md`).
//!
//! One boot of a variant of the test image whose `init.toml` sets sysctls (one of
//! them misspelled), rlimits, reservations and limits for berthd's cgroup, and an extra
//! service that ignores SIGTERM. Needs `make static image-test`; run one at a time:
//! `cargo test -p berth-qemu-tests --test services -- --test-threads=1 --nocapture`.
//! Durations are printed, never asserted beyond the hang guards.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_qemu_tests::checks::Checks;
use berth_qemu_tests::image::{Variant, VariantBuilder};
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{AgentClient, Image, Vm};

/// Init's readiness line.
const READY: &str = r"berth-init: berth ready";
/// Hang guard for restarts and shutdowns.
const ACTION_TIMEOUT: Duration = Duration::from_secs(180);
/// The agent binary in the test image; it also plays the stubborn service and the sleeper.
const AGENT: &str = berth_layout::paths::TEST_AGENT;
/// Stop timeout of the stubborn service.
const STUBBORN_TIMEOUT_SECS: u64 = 3;

/// What the variant adds to `init.toml` (the builder appends the test agent's `[[service]]`
/// after it).
fn extra_config() -> String {
    format!(
        r#"
[sysctl]
"net.ipv4.ip_forward" = "1"
"vm.swappiness" = 17
net.core.somaxconn = 1234
"net.ipv4.no_such_key" = "1"

[rlimits]
nofile = {{ soft = 65536, hard = 131072 }}
core = {{ soft = 0, hard = "unlimited" }}

[berthd.resources]
memory_min = "32M"
memory_low = "64M"
memory_max = "1G"
cpu_weight = 300
cpu_max = "150000 100000"
pids_max = 2048

[[service]]
name = "stubborn"
path = "{AGENT}"
args = ["--ignore-sigterm"]
stop_timeout_secs = {STUBBORN_TIMEOUT_SECS}

[service.resources]
pids_max = 16

[[service]]
name = "forker"
path = "{AGENT}"
args = ["--spawn-sleeper"]
restart = "on-failure"
"#
    )
}

/// Builds the variant: debug console (so init says when it watches the power button) plus
/// [`extra_config`].
fn variant() -> Result<Variant> {
    Ok(VariantBuilder::new()?
        .edit("init.toml", |text| {
            let text = text.replacen("level = \"info\"", "level = \"debug\"", 1);
            text + &extra_config()
        })?
        .build()?)
}

fn boot(name: &str, image: &Image) -> Result<Vm> {
    let mut vm = Vm::builder(name).image(image).spawn()?;
    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!("{ready}");
    Ok(vm)
}

fn read_text(agent: &mut AgentClient, path: &str) -> Result<String> {
    let bytes = agent
        .read_file(path)
        .with_context(|| format!("reading {path} in the guest"))?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

/// The single pid of `name`.
fn one_pid(agent: &mut AgentClient, name: &str) -> Result<i32> {
    match agent.pidof(name)?.as_slice() {
        [pid] => Ok(*pid),
        other => bail!("expected one {name}, found pids {other:?}"),
    }
}

/// The line of `/proc/<pid>/limits` for `what` (e.g. "Max open files"), whitespace collapsed.
fn limits_line(limits: &str, what: &str) -> Option<String> {
    limits
        .lines()
        .find(|l| l.starts_with(what))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// One build and one boot of the variant: the read-only checks first, then berthd killed
/// through its cgroup (init restarts it), then the power-off that ends the VM
/// (`berth_qemu_tests::checks`).
#[test]
fn one_boot_cgroups_config_killed_cgroup_then_stop_timeout() -> Result<()> {
    let variant = variant()?;
    let mut vm = boot("services", &variant.image)?;
    let mut checks = Checks::new();
    checks.run("cgroup tree, sysctls and rlimits match the config", || {
        cgroup_tree_sysctls_and_rlimits_match_the_config(&mut vm)
    });
    checks.run(
        "killing berthd's cgroup leaves containers.slice running",
        || killing_berthds_cgroup_leaves_containers_slice_running(&mut vm),
    );
    checks.run(
        "a service ignoring SIGTERM is killed after its stop timeout",
        || a_service_ignoring_sigterm_is_killed_after_its_stop_timeout(&mut vm),
    );
    Ok(checks.finish()?)
}

fn cgroup_tree_sysctls_and_rlimits_match_the_config(vm: &mut Vm) -> Result<()> {
    let mut agent = vm.agent()?;
    let mut checks: Vec<(String, String, String)> = Vec::new();
    let mut expect = |what: &str, got: String, want: &str| {
        checks.push((what.to_string(), got, want.to_string()))
    };

    // The tree: init in init.scope, controllers enabled down to the service cgroups and in
    // the delegated containers.slice.
    let root_controllers = read_text(&mut agent, "/sys/fs/cgroup/cgroup.controllers")?;
    println!("root cgroup.controllers: {root_controllers}");
    let root_enabled = read_text(&mut agent, "/sys/fs/cgroup/cgroup.subtree_control")?;
    expect(
        "root cgroup.subtree_control",
        root_enabled.clone(),
        &root_controllers,
    );
    for slice in ["system.slice", "containers.slice"] {
        let enabled = read_text(
            &mut agent,
            &format!("/sys/fs/cgroup/{slice}/cgroup.subtree_control"),
        )?;
        let available = read_text(
            &mut agent,
            &format!("/sys/fs/cgroup/{slice}/cgroup.controllers"),
        )?;
        expect(
            &format!("{slice}/cgroup.subtree_control"),
            enabled,
            &available,
        );
    }
    expect(
        "init.scope/cgroup.procs",
        read_text(&mut agent, "/sys/fs/cgroup/init.scope/cgroup.procs")?,
        "1",
    );
    let berthd = one_pid(&mut agent, "berthd")?;
    expect(
        "berthd's /proc/<pid>/cgroup",
        read_text(&mut agent, &format!("/proc/{berthd}/cgroup"))?,
        "0::/system.slice/berthd",
    );
    expect(
        "the agent's /proc/self/cgroup",
        read_text(&mut agent, "/proc/self/cgroup")?,
        "0::/system.slice/test-agent",
    );

    // berthd's reservations and limits.
    let dir = "/sys/fs/cgroup/system.slice/berthd";
    for (file, want) in [
        ("memory.min", (32u64 << 20).to_string()),
        ("memory.low", (64u64 << 20).to_string()),
        ("memory.max", (1u64 << 30).to_string()),
        ("cpu.weight", "300".into()),
        ("cpu.max", "150000 100000".into()),
        ("pids.max", "2048".into()),
    ] {
        expect(
            &format!("berthd {file}"),
            read_text(&mut agent, &format!("{dir}/{file}"))?,
            &want,
        );
    }
    expect(
        "stubborn pids.max",
        read_text(&mut agent, "/sys/fs/cgroup/system.slice/stubborn/pids.max")?,
        "16",
    );

    // sysctls.
    for (file, want) in [
        ("net/ipv4/ip_forward", "1"),
        ("vm/swappiness", "17"),
        ("net/core/somaxconn", "1234"),
    ] {
        expect(
            &format!("/proc/sys/{file}"),
            read_text(&mut agent, &format!("/proc/sys/{file}"))?,
            want,
        );
    }

    // rlimits, as berthd inherited them.
    let limits = read_text(&mut agent, &format!("/proc/{berthd}/limits"))?;
    expect(
        "berthd Max open files",
        limits_line(&limits, "Max open files").unwrap_or_default(),
        "Max open files 65536 131072 files",
    );
    expect(
        "berthd Max core file size",
        limits_line(&limits, "Max core file size").unwrap_or_default(),
        "Max core file size 0 unlimited bytes",
    );

    for (what, got, want) in &checks {
        println!("{what}: {got:?} (config: {want:?})");
    }
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(w, g, e)| format!("{w}: got {g:?}, want {e:?}"))
        .collect();
    vm.check(
        wrong.is_empty(),
        format!("differs from the config:\n{}", wrong.join("\n")),
    )?;

    // The misspelled sysctl: one error line naming key and value; the others still applied
    // (sysctls are written before services start, so before `berth ready`).
    let console = vm.console_text();
    let bad: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("net.ipv4.no_such_key"))
        .collect();
    println!("bad sysctl line: {bad:?}");
    vm.check(
        bad.len() == 1
            && bad[0].contains("error: sysctl net.ipv4.no_such_key = \"1\": no such key"),
        format!("expected one error line for the bad sysctl, got {bad:?}"),
    )?;
    vm.check(
        !console.contains("cgroup: cannot"),
        "a cgroup step failed (see the console)",
    )?;

    // forker printed the pid of the sleeper it left behind and exited 0: not restarted
    // (restart = on-failure), and the sleeper was killed with it, its cgroup emptied.
    let exited = console
        .lines()
        .find(|l| l.contains("berth-init: forker (pid "))
        .map(String::from);
    println!("{}", exited.as_deref().unwrap_or("(no forker exit line)"));
    vm.check(
        exited
            .as_deref()
            .is_some_and(|l| l.contains("exit status 0; not restarting (restart = on-failure)")),
        "forker's exit line does not say it is not restarted",
    )?;
    let sleeper: i32 = console
        .lines()
        .find_map(|l| l.split("] forker: ").nth(1))
        .and_then(|pid| pid.trim().parse().ok())
        .context("forker printed no pid")?;
    let (_, gone_after) = vm.wait_for_ok(
        "forker's sleeper to be killed with its cgroup",
        ACTION_TIMEOUT,
        Duration::from_millis(100),
        |_| match agent.kill(sleeper, 0) {
            Err(berth_qemu_tests::Error::AgentOp { .. }) => Ok(()),
            Ok(()) => Err(berth_qemu_tests::Error::AgentProtocol(format!(
                "pid {sleeper} still exists"
            ))),
            Err(e) => Err(e),
        },
    )?;
    let events = read_text(
        &mut agent,
        "/sys/fs/cgroup/system.slice/forker/cgroup.events",
    )?;
    println!(
        "forker's sleeper (pid {sleeper}) gone ({:.3} s into the check); forker cgroup.events: {}",
        gone_after.as_secs_f64(),
        events.replace('\n', ", ")
    );
    vm.check(
        events.contains("populated 0"),
        format!("forker's cgroup is not empty: {events}"),
    )?;
    Ok(())
}

fn a_service_ignoring_sigterm_is_killed_after_its_stop_timeout(vm: &mut Vm) -> Result<()> {
    let mut agent = vm.agent()?;
    let mut stubborn = None;
    for pid in agent.pidof("berth-test-agent")? {
        let cmdline = agent.read_file(&format!("/proc/{pid}/cmdline"))?;
        if String::from_utf8_lossy(&cmdline).contains("--ignore-sigterm") {
            stubborn = Some(pid);
        }
    }
    let stubborn = stubborn.context("no berth-test-agent --ignore-sigterm process")?;
    let status = read_text(&mut agent, &format!("/proc/{stubborn}/status"))?;
    let ignored = status
        .lines()
        .find(|l| l.starts_with("SigIgn:"))
        .unwrap_or_default()
        .to_string();
    println!("stubborn service pid {stubborn}, {ignored}");
    // SIGTERM is signal 15: bit 14 of SigIgn.
    let mask = u64::from_str_radix(ignored.trim_start_matches("SigIgn:").trim(), 16).unwrap_or(0);
    vm.check(
        mask & (1 << 14) != 0,
        format!("the stubborn service does not ignore SIGTERM: {ignored}"),
    )?;
    drop(agent);

    vm.wait_for("init to watch the power button", BOOT_TIMEOUT, |vm| {
        vm.console_text()
            .contains("berth-init: power button: watching")
    })?;
    let pressed = Instant::now();
    vm.powerdown()?;
    let status = vm.wait_exit(ACTION_TIMEOUT)?;
    let took = pressed.elapsed();
    let console = vm.console_text();
    let shutdown: Vec<&str> = console
        .lines()
        .skip_while(|l| !l.contains("berth-init: shutting down"))
        .filter(|l| l.contains("berth-init:"))
        .collect();
    println!("shutdown lines:\n{}", shutdown.join("\n"));
    println!("system_powerdown -> QEMU exit: {:.3} s", took.as_secs_f64());
    vm.check(status.success(), format!("QEMU exited with {status}"))?;
    vm.check(
        console.contains("reboot: Power down"),
        "no `reboot: Power down` on the console",
    )?;
    vm.check(
        !console.contains("Kernel panic"),
        "kernel panic on the console",
    )?;
    let has = |needle: &str| shutdown.iter().any(|l| l.contains(needle));
    vm.check(
        has(&format!(
            "stubborn did not stop within {STUBBORN_TIMEOUT_SECS}s of SIGTERM; sending SIGKILL"
        )),
        "no line saying the stubborn service was SIGKILLed after its timeout",
    )?;
    vm.check(
        has("stopped stubborn in ") && has("(SIGKILL)"),
        "no stop duration for the stubborn service",
    )?;
    vm.check(
        has("stopped test-agent in "),
        "no stop line for the test agent",
    )?;
    vm.check(has("stopped berthd in "), "no stop line for berthd")?;
    // Order: the extra services before berthd.
    let pos = |needle: &str| shutdown.iter().position(|l| l.contains(needle));
    vm.check(
        pos("stopped stubborn in ") < pos("stopped berthd in "),
        "berthd was stopped before the extra services",
    )?;
    Ok(())
}

fn killing_berthds_cgroup_leaves_containers_slice_running(vm: &mut Vm) -> Result<()> {
    let mut agent = vm.agent()?;

    // A long-running process, moved into a cgroup of the delegated slice the way berthd
    // places a shim (write_file creates the cgroup directory).
    let out = agent.run(&[AGENT, "--spawn-sleeper"])?;
    vm.check(out.success(), format!("--spawn-sleeper failed: {out:?}"))?;
    let sleeper: i32 = out
        .stdout
        .trim()
        .parse()
        .with_context(|| format!("no pid in {:?}", out.stdout))?;
    agent.write_file(
        "/sys/fs/cgroup/containers.slice/test-x/cgroup.procs",
        sleeper.to_string().as_bytes(),
        Some(0o644),
    )?;
    let cgroup = read_text(&mut agent, &format!("/proc/{sleeper}/cgroup"))?;
    println!("sleeper pid {sleeper} in {cgroup}");
    vm.check(
        cgroup == "0::/containers.slice/test-x",
        format!("sleeper not moved: {cgroup}"),
    )?;

    let old = one_pid(&mut agent, "berthd")?;
    let killed = Instant::now();
    agent.write_file(
        "/sys/fs/cgroup/system.slice/berthd/cgroup.kill",
        b"1",
        Some(0o200),
    )?;
    let (new, _) = vm.wait_for_ok(
        "a new berthd",
        ACTION_TIMEOUT,
        Duration::from_millis(100),
        |_| match agent.pidof("berthd")?.as_slice() {
            [pid] if *pid != old => Ok(*pid),
            other => Err(berth_qemu_tests::Error::AgentProtocol(format!(
                "berthd pids {other:?}"
            ))),
        },
    )?;
    let restarted = killed.elapsed();
    let again = vm.wait_for_line(r"berth-init: berthd ready again", ACTION_TIMEOUT)?;
    let ready = killed.elapsed();
    println!(
        "berthd pid {old} killed through its cgroup; pid {new} after {:.3} s, ready again after {:.3} s",
        restarted.as_secs_f64(),
        ready.as_secs_f64()
    );
    println!("{again}");
    let exited = vm
        .console_text()
        .lines()
        .find(|l| l.contains(&format!("berthd (pid {old}) exited")))
        .map(String::from);
    println!("{}", exited.as_deref().unwrap_or("(no exit line)"));
    vm.check(
        exited.as_deref().is_some_and(|l| l.contains("SIGKILL")),
        "no console line saying berthd was killed by SIGKILL",
    )?;

    agent
        .kill(sleeper, 0)
        .with_context(|| format!("the sleeper (pid {sleeper}) did not survive"))?;
    let cgroup = read_text(&mut agent, &format!("/proc/{sleeper}/cgroup"))?;
    vm.check(
        cgroup == "0::/containers.slice/test-x",
        format!("sleeper moved: {cgroup}"),
    )?;
    let berthd_cgroup = read_text(&mut agent, &format!("/proc/{new}/cgroup"))?;
    vm.check(
        berthd_cgroup == "0::/system.slice/berthd",
        format!("new berthd in {berthd_cgroup}"),
    )?;
    println!("sleeper pid {sleeper} still running in {cgroup}; new berthd in {berthd_cgroup}");
    Ok(())
}
