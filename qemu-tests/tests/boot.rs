//! Boot, API reachability, supervision, power-off and configuration errors of a berth test
//! image under QEMU.
//!
//! Needs the test image (`make image-test`) and the static binaries (`make static`); run one
//! at a time: `cargo test -p berth-qemu-tests -- --test-threads=1`. Durations are printed,
//! never asserted beyond the hang guards.

use std::io::{BufRead, BufReader, Write};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_qemu_tests::berthctl;
use berth_qemu_tests::checks::Checks;
use berth_qemu_tests::image::VariantBuilder;
use berth_qemu_tests::vm::{line_uptime, BOOT_TIMEOUT};
use berth_qemu_tests::{Image, Vm};
use berth_test_support::pty::Pty;

/// Init's readiness line (`[<uptime>] berth-init: berth ready …`).
const READY: &str = r"berth-init: berth ready";
/// Hang guard for one berthctl call over the bridge.
const CTL_TIMEOUT: Duration = Duration::from_secs(30);
/// Hang guard for restarts and shutdowns.
const ACTION_TIMEOUT: Duration = Duration::from_secs(90);

fn boot(name: &str, image: &Image) -> Result<Vm> {
    Ok(Vm::builder(name).image(image).spawn()?)
}

fn boot_test_image(name: &str) -> Result<Vm> {
    boot(name, &Image::test_image()?)
}

fn mib(bytes: u64) -> String {
    format!(
        "{:.2} MiB ({bytes} bytes)",
        bytes as f64 / (1024.0 * 1024.0)
    )
}

/// One quick `berthctl version` attempt.
///
/// The bridge drops a request that arrives while berthd is not listening yet, and that
/// request's answer never comes: so berthctl gives up after 1 s (an answer takes about 40 ms),
/// which is the resolution of the measurements made with it, and the harness cuts it after
/// [`ATTEMPT`] in case berthctl itself hangs.
fn try_version(vm: &mut Vm) -> berth_qemu_tests::Result<berth_qemu_tests::process::CommandOutput> {
    vm.berthctl_ok(&["--timeout", "1", "version"], ATTEMPT)
}

/// Time allowed to one `berthctl version` attempt while waiting for berthd.
const ATTEMPT: Duration = Duration::from_secs(3);

/// Retries `berthctl version` until it answers; returns its output.
fn first_version(vm: &mut Vm, timeout: Duration) -> Result<String> {
    let (out, _) = vm.wait_for_ok(
        "berthctl version to answer",
        timeout,
        Duration::from_millis(20),
        try_version,
    )?;
    Ok(out.stdout)
}

/// No kernel panic in `console` (the text of `vm`'s console).
fn check_no_panic(vm: &mut Vm, console: &str) -> Result<()> {
    vm.check(
        !console.contains("Kernel panic"),
        "kernel panic on the console",
    )?;
    Ok(())
}

/// QEMU exited 0 after the kernel's `reboot: Power down`, with no kernel panic.
fn check_clean_power_off(vm: &mut Vm, status: std::process::ExitStatus) -> Result<()> {
    let console = vm.console_text();
    vm.check(status.success(), format!("QEMU exited with {status}"))?;
    vm.check(
        console.contains("reboot: Power down"),
        "no `reboot: Power down` on the console",
    )?;
    check_no_panic(vm, &console)?;
    Ok(())
}

/// One boot of the test image serves every check that leaves the node as it found it (or
/// recovers: ready and Version, berthctl through the bridge, container stdio, the agent, a
/// killed berthd), in this order; the first measures the boot, SIGTERM to init ends it. Each check
/// is reported with its duration (`berth_qemu_tests::checks`).
#[test]
fn one_boot_ready_bridge_agent_restart_then_sigterm() -> Result<()> {
    let mut vm = boot_test_image("boot")?;
    let mut checks = Checks::new();
    checks.run("boots to ready and answers Version", || {
        ready_and_version(&mut vm)
    });
    checks.run("berthctl reaches berthd through the bridge", || {
        berthctl_reaches_berthd_through_the_bridge(&mut vm)
    });
    checks.run("container stdio through the bridge", || {
        container_stdio_through_the_bridge(&mut vm)
    });
    checks.run("the test agent acts inside the guest", || {
        test_agent_acts_inside_the_guest(&mut vm)
    });
    checks.run("berthd killed is restarted", || {
        berthd_killed_is_restarted(&mut vm)
    });
    checks.run("SIGTERM to init powers off cleanly", || {
        sigterm_to_init_powers_off_cleanly(&mut vm)
    });
    Ok(checks.finish()?)
}

/// Boot to ready, measured from QEMU's start: the console line and the first Version reply.
fn ready_and_version(vm: &mut Vm) -> Result<()> {
    // Poll the API and the console together; each berthctl attempt gives up after 1 s (a
    // request the bridge received before berthd listened is dropped), which bounds the error.
    let mut ready_seen = None;
    vm.wait_for_ok(
        "berthctl version to answer",
        BOOT_TIMEOUT,
        Duration::from_millis(20),
        |vm| {
            if ready_seen.is_none() && vm.console_text().contains("berth ready") {
                ready_seen = Some(vm.started().elapsed());
            }
            try_version(vm)
        },
    )?;
    let first_reply = vm.started().elapsed();
    let line = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let uptime = line_uptime(&line).with_context(|| format!("no uptime prefix on {line:?}"))?;
    println!("ready line: {line}");
    println!("kernel uptime at `berth ready`: {uptime:.3} s");
    if let Some(seen) = ready_seen {
        println!(
            "QEMU start -> `berth ready` seen on the console: {:.3} s",
            seen.as_secs_f64()
        );
    }
    println!(
        "QEMU start -> first berthctl version reply: {:.3} s (attempts give up after 1 s)",
        first_reply.as_secs_f64()
    );
    Ok(())
}

fn berthctl_reaches_berthd_through_the_bridge(vm: &mut Vm) -> Result<()> {
    let version = vm.berthctl_ok(&["version"], CTL_TIMEOUT)?;
    println!(
        "berthctl version ({:.3} s):\n{}",
        version.elapsed.as_secs_f64(),
        version.stdout
    );
    let server = version
        .stdout
        .split("Server:")
        .nth(1)
        .context("no Server section")?;
    let expected = env!("CARGO_PKG_VERSION");
    vm.check(
        server.contains(expected),
        format!(
            "server version {expected} missing from:\n{}",
            version.stdout
        ),
    )?;

    let plugins = vm.berthctl_ok(&["plugins", "ls"], CTL_TIMEOUT)?;
    println!(
        "berthctl plugins ls ({:.3} s):\n{}",
        plugins.elapsed.as_secs_f64(),
        plugins.stdout
    );
    let mut lines = plugins.stdout.lines();
    let header = lines.next().unwrap_or_default();
    vm.check(
        header.contains("TYPE") && header.contains("ID"),
        format!("no table header in:\n{}", plugins.stdout),
    )?;
    vm.check(
        lines.next().is_some(),
        format!("no plugin rows in:\n{}", plugins.stdout),
    )?;
    Ok(())
}

/// Hang guard for one container run through the bridge.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Container stdio through the bridge (issue 16): output, stdin and its end, a terminal and
/// the exit status travel over the API connection (`Tasks.Attach`); a path on the host
/// would mean nothing to the guest (the output used to be lost without a word).
fn container_stdio_through_the_bridge(vm: &mut Vm) -> Result<()> {
    let image = berth_layout::paths::DEMO_IMAGE;
    let started = Instant::now();
    // The demo image is imported in the background after berthd starts.
    berth_qemu_tests::wait::wait_until_ok(
        "the demo image to be imported",
        RUN_TIMEOUT,
        Duration::from_millis(200),
        || match vm.berthctl(&["images", "ls", "-q"], CTL_TIMEOUT) {
            Ok(ls) if ls.stdout.lines().any(|l| l == image) => Ok(()),
            Ok(ls) => Err(format!("not yet: {}", ls.combined())),
            Err(e) => Err(e.to_string()),
        },
    )?;
    let out = vm.berthctl(&["run", "--rm", image, "echo", "hi"], RUN_TIMEOUT)?;
    println!(
        "run --rm {image} echo hi through the bridge: {:.3} s",
        out.elapsed.as_secs_f64()
    );
    vm.check(
        out.stdout == "hi\n" && out.status.success(),
        format!("run --rm echo hi: {out:?}"),
    )?;
    let out = berthctl::run_fed(
        &vm.api_address(),
        &["run", "-i", "--rm", image, "sh", "-c", "cat; exit 4"],
        b"through the bridge\n",
        RUN_TIMEOUT,
    )?;
    println!(
        "run -i (stdin, then its end): {:.3} s",
        out.elapsed.as_secs_f64()
    );
    vm.check(
        out.stdout == "through the bridge\n" && out.status.code() == Some(4),
        format!("run -i cat: {out:?}"),
    )?;
    // An interactive shell, driven through a real pty on the host.
    let t = Instant::now();
    let mut cmd = std::process::Command::new(berthctl::path()?);
    cmd.arg("--address")
        .arg(vm.api_address())
        .args(["run", "-it", "--rm", image, "sh"]);
    let mut pty = Pty::spawn(cmd, 100, 30)?;
    let at = pty.expect(0, "# ", RUN_TIMEOUT);
    pty.write("echo $((6*7)); stty size\r");
    let _ = pty.expect(at, "30 100", RUN_TIMEOUT);
    pty.write("exit 3\r");
    let status = pty.wait(RUN_TIMEOUT);
    println!(
        "run -it session through the bridge: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    vm.check(
        status.code() == Some(3) && pty.screen().contains("42"),
        format!(
            "run -it: {status:?}, the terminal showed {:?}",
            pty.screen()
        ),
    )?;
    println!(
        "container stdio through the bridge: {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn sigterm_to_init_powers_off_cleanly(vm: &mut Vm) -> Result<()> {
    let mut agent = vm.agent()?;
    let asked = Instant::now();
    match agent.kill(1, libc::SIGTERM) {
        // Init may power off before the agent's reply gets out.
        Ok(()) | Err(berth_qemu_tests::Error::AgentGone { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let status = vm.wait_exit(ACTION_TIMEOUT)?;
    println!(
        "SIGTERM to pid 1 -> QEMU exit: {:.3} s",
        asked.elapsed().as_secs_f64()
    );
    check_clean_power_off(vm, status)
}

#[test]
fn acpi_power_button_powers_off_cleanly() -> Result<()> {
    // init watches the button through evdev, which needs these modules in the root image.
    let image = Image::test_image()?;
    let manifest = image.manifest()?;
    let has = |name: &str| {
        ["modules", "builtin_modules"].iter().any(|k| {
            manifest["root"][k]
                .as_array()
                .is_some_and(|m| m.iter().any(|v| v.as_str() == Some(name)))
        })
    };
    let missing: Vec<&str> = ["button", "evdev"]
        .into_iter()
        .filter(|m| !has(m))
        .collect();
    ensure!(
        missing.is_empty(),
        "the image lacks the modules {missing:?} (configs/image.toml [root] modules): init's \
         [shutdown] power_button cannot see QEMU's system_powerdown without them"
    );
    // `berth ready` only says berthd answered: init starts watching the button once its module
    // thread is done, and says so at debug level. A press before that is lost (no acpid), so
    // boot the test configuration at debug level and press once init watches.
    let variant = VariantBuilder::new()?
        .edit("init.toml", |text| {
            replace_value(&text, "console", "level", "\"debug\"")
                .expect("[console] level in init.toml")
                .0
        })?
        .build()?;
    let mut vm = boot("powerbutton", &variant.image)?;
    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    // Before or after the ready line: the order is not part of the contract.
    let watching = "berth-init: power button: watching";
    vm.wait_for("init to watch the power button", BOOT_TIMEOUT, |vm| {
        vm.console_text().contains(watching)
    })?;
    let watched = vm
        .console_text()
        .lines()
        .find(|l| l.contains(watching))
        .map(String::from);
    println!("{ready}\n{}", watched.unwrap_or_default());
    println!(
        "monitor `info status`: {}",
        vm.monitor("info status")?.trim()
    );
    let pressed = Instant::now();
    vm.powerdown()?;
    let status = vm.wait_exit(ACTION_TIMEOUT)?;
    println!(
        "system_powerdown -> QEMU exit: {:.3} s",
        pressed.elapsed().as_secs_f64()
    );
    check_clean_power_off(&mut vm, status)
}

fn berthd_killed_is_restarted(vm: &mut Vm) -> Result<()> {
    let mut agent = vm.agent()?;
    let pids = agent.pidof("berthd")?;
    let &[old] = pids.as_slice() else {
        bail!("expected one berthd, found pids {pids:?}")
    };

    let killed = Instant::now();
    agent.kill(old, libc::SIGKILL)?;
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
    first_version(vm, ACTION_TIMEOUT)?;
    println!(
        "berthd pid {old} killed; pid {new} after {:.3} s, answering Version after {:.3} s",
        restarted.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    Ok(())
}

fn test_agent_acts_inside_the_guest(vm: &mut Vm) -> Result<()> {
    let mut agent = vm.agent()?;

    // run: a program from the image, talking to berthd directly (no bridge involved).
    let out = agent.run(&["/usr/bin/berthctl", "version"])?;
    println!(
        "in-guest berthctl version: status {}\n{}",
        out.status, out.stdout
    );
    vm.check(out.success(), format!("in-guest berthctl failed: {out:?}"))?;
    vm.check(
        out.stdout.contains("Server:"),
        format!("no server version in {out:?}"),
    )?;
    let missing = agent.run(&["/usr/bin/no-such-program"]);
    vm.check(
        matches!(missing, Err(berth_qemu_tests::Error::AgentOp { .. })),
        format!("{missing:?}"),
    )?;

    // write_file / read_file round trip on a tmpfs.
    let data = b"berth\0test\n".repeat(1000);
    agent.write_file("/run/berth-test/file", &data, Some(0o600))?;
    vm.check(
        agent.read_file("/run/berth-test/file")? == data,
        "read_file returned other bytes",
    )?;
    let ro = agent.write_file("/usr/bin/x", b"", None);
    vm.check(
        matches!(ro, Err(berth_qemu_tests::Error::AgentOp { .. })),
        format!("writing the read-only root: {ro:?}"),
    )?;

    // pidof: init is pid 1 under the name it was started as.
    vm.check(agent.pidof("init")? == vec![1], "pidof init")?;
    vm.check(
        agent.pidof("no-such-process")?.is_empty(),
        "pidof of nothing",
    )?;

    // syslog: an error while nothing listens on /dev/log, success once init receives it.
    match agent.syslog("hello from the test agent") {
        Ok(()) => println!("syslog: delivered to /dev/log"),
        Err(berth_qemu_tests::Error::AgentOp { error, .. })
            if error.contains("nothing listens") =>
        {
            println!("syslog: {error} (no receiver in init yet)")
        }
        Err(e) => return Err(e.into()),
    }

    // New host connections are served whatever an earlier one left unfinished: the agent
    // drops the leftover once it noticed the hang-up (checked with a raw connection after a
    // pause), and the client's leading newline covers a reconnection too quick to notice.
    drop(agent);
    let leave_half_a_line = || -> Result<()> {
        let mut raw = std::os::unix::net::UnixStream::connect(vm.test_socket())?;
        raw.write_all(br#"{"id":999999,"op":"pi"#)?;
        Ok(())
    };
    leave_half_a_line()?;
    thread::sleep(Duration::from_secs(1));
    let mut raw = std::os::unix::net::UnixStream::connect(vm.test_socket())?;
    raw.write_all(b"{\"id\":424242,\"op\":\"ping\"}\n")?;
    raw.set_read_timeout(Some(ACTION_TIMEOUT))?;
    let mut reply = String::new();
    BufReader::new(raw).read_line(&mut reply)?;
    vm.check(
        reply.contains(r#""id":424242,"ok":true"#),
        format!("leftover not discarded: reply {reply:?}"),
    )?;
    leave_half_a_line()?;
    let mut again = vm.agent()?;
    vm.check(
        again.pidof("init")? == vec![1],
        "pidof init after reconnecting",
    )?;
    Ok(())
}

/// Rewrites the line of `key` within `[table]` with `edit`; returns the text and the 1-based
/// line number.
fn edit_key_line(
    text: &str,
    table: &str,
    key: &str,
    edit: impl FnOnce(&str) -> String,
) -> Option<(String, usize)> {
    let mut in_table = false;
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (i, line) in lines.iter_mut().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_table = trimmed == format!("[{table}]");
        } else if in_table && trimmed.split('=').next().map(str::trim) == Some(key) {
            *line = edit(line);
            return Some((lines.join("\n") + "\n", i + 1));
        }
    }
    None
}

/// Renames `key` to `typo` on its line within `[table]`; returns the 1-based line number.
fn misspell_key(text: &str, table: &str, key: &str, typo: &str) -> Option<(String, usize)> {
    edit_key_line(text, table, key, |line| line.replacen(key, typo, 1))
}

/// Replaces the value of `key` within `[table]`; returns the 1-based line number.
fn replace_value(text: &str, table: &str, key: &str, value: &str) -> Option<(String, usize)> {
    edit_key_line(text, table, key, |_| format!("{key} = {value}"))
}

/// Boots a test-image variant whose `/etc/berth/<file>` was broken by `edit` (which returns
/// the edited text and the 1-based line it changed), waits for the console line naming the file
/// and checks it names that line and `key`. Returns the VM, that line and the line number.
fn boot_with_bad_line(
    name: &str,
    file: &str,
    key: &str,
    edit: impl FnOnce(&str) -> Option<(String, usize)>,
) -> Result<(Vm, String, usize)> {
    let mut line_no = 0;
    let variant = VariantBuilder::new()?
        .edit(file, |text| {
            let (edited, n) =
                edit(&text).unwrap_or_else(|| panic!("{key}: nothing to edit in {file}"));
            line_no = n;
            edited
        })?
        .build()?;
    let mut vm = boot(name, &variant.image)?;
    let report = vm.wait_for_line(&format!("/etc/berth/{}", regex::escape(file)), BOOT_TIMEOUT)?;
    println!("config error line: {report}");
    vm.check(
        report.contains(&format!(":{line_no}")),
        format!("line {line_no} not named in {report:?}"),
    )?;
    vm.check(report.contains(key), format!("key not named in {report:?}"))?;
    Ok((vm, report, line_no))
}

#[test]
fn bad_berthd_config_is_reported_and_berthd_is_not_started() -> Result<()> {
    let (mut vm, _report, line_no) =
        boot_with_bad_line("bad-berthd", "berthd.toml", "adress", |text| {
            misspell_key(text, "ttrpc", "address", "adress")
        })?;

    let started = Instant::now();
    let gave_up = vm.wait_for_line(r"berth-init: error: berthd cannot start", BOOT_TIMEOUT)?;
    println!(
        "give-up line after {:.1} s: {gave_up}",
        started.elapsed().as_secs_f64()
    );

    thread::sleep(Duration::from_secs(5));
    let console = vm.console_text();
    vm.check(
        !console.contains("berth ready"),
        "`berth ready` appeared despite the bad config",
    )?;
    let mentions: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("berthd.toml"))
        .collect();
    println!("{} console lines name berthd.toml", mentions.len());
    // berthd exits with EX_CONFIG, so init starts it once and says why it stops: berthd's own
    // line plus init's give-up line, no retries.
    vm.check(
        gave_up.contains("invalid configuration") && gave_up.contains("not restarting"),
        format!("give-up line does not say the configuration is invalid: {gave_up:?}"),
    )?;
    vm.check(
        mentions.len() == 2 && !console.contains("restarting in"),
        format!("berthd was retried or its error repeated: {mentions:?}"),
    )?;
    vm.check(
        !console.contains("berthd: berthd:"),
        "berthd's lines are prefixed twice",
    )?;
    for line in &mentions {
        vm.check(
            line.contains(&format!(":{line_no}")) && line.contains("adress"),
            format!("error split over lines: {line:?}"),
        )?;
    }
    check_no_panic(&mut vm, &console)?;
    Ok(())
}

#[test]
fn bad_init_config_falls_back_to_defaults() -> Result<()> {
    let (mut vm, report, _line_no) =
        boot_with_bad_line("bad-init", "init.toml", "max_failures", |text| {
            replace_value(text, "berthd", "max_failures", "\"x\"")
        })?;
    vm.check(
        report.to_lowercase().contains("default"),
        format!("no mention of defaults in {report:?}"),
    )?;

    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!("still ready: {ready}");
    let mentions = vm
        .console_text()
        .lines()
        .filter(|l| l.contains("init.toml"))
        .count();
    vm.check(
        mentions == 1,
        format!("init.toml named on {mentions} console lines, expected one"),
    )?;
    Ok(())
}

#[test]
fn image_sizes() -> Result<()> {
    let image = Image::test_image()?;
    println!("test image {}:", image.dir.display());
    println!("  initramfs.img: {}", mib(image.initramfs_size()?));
    println!(
        "  userland (manifest sizes.userland): {}",
        mib(image.userland_size()?)
    );
    let manifest = image.manifest()?;
    if let Some(sizes) = manifest.get("sizes") {
        println!("  all sizes: {sizes}");
    }
    Ok(())
}

#[test]
fn config_edits_find_their_line() {
    let text = "version = 1\n[ttrpc]\n# c\naddress = \"/x\"\n[debug]\naddress = 2\n";
    let (edited, n) = misspell_key(text, "ttrpc", "address", "adress").unwrap();
    assert_eq!(n, 4);
    assert!(edited.contains("adress = \"/x\"\n[debug]\naddress = 2"));
    let (edited, n) = replace_value(
        "[berthd]\nmax_failures = 5\n",
        "berthd",
        "max_failures",
        "\"x\"",
    )
    .unwrap();
    assert_eq!(
        (edited.as_str(), n),
        ("[berthd]\nmax_failures = \"x\"\n", 2)
    );
    assert!(misspell_key(text, "nope", "address", "x").is_none());
}
