//! `make bench`: the latency of running a container, `berthctl run --rm busybox true` against
//! Debian's containerd + runc (`ctr run --rm IMAGE ID true`), on the same image in the same
//! run, reported as the ratio of the medians; bare `runc run` of a bundle of the same image
//! as the floor. Then the idle resident memory of berthd and one berth shim next to
//! containerd's and one `containerd-shim-runc-v2`'s.
//!
//! Both engines run the whole path: create the container record and its snapshot, start the
//! shim, create and start the task with stdio attached through FIFOs, wait, delete the task
//! and the container. After a warm-up, the two alternate run by run so that both see the same
//! machine load.
//!
//! Both daemons keep their state directory (shim sockets, bundles, exit records) on a tmpfs,
//! as on a real host (`/run/berth`, `/run/containerd`), and their root on the disk.
//!
//! Ignored by `cargo test`; run by `make bench` (release build, root).

use berth_test_support::host;
use berth_test_support::support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use host::{median, rss_kib, run, Containerd};

const WARMUP: usize = 3;
const RUNS: usize = 20;

/// Runs `cmd` (stdin from /dev/null) and returns how long it took; fails when it fails.
fn timed(cmd: &mut Command) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawn {cmd:?}"))?;
    let took = t.elapsed();
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(took)
}

/// Kills every process whose command line mentions `dir` (shims the benchmark left behind
/// on failure: both engines' shims outlive their daemons by design), then detaches every
/// mount below it.
struct KillBelow(std::path::PathBuf);

impl Drop for KillBelow {
    fn drop(&mut self) {
        for pid in pids_mentioning(&self.0.to_string_lossy(), "") {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        host::unmount_below(&self.0);
    }
}

/// A tmpfs on `dir` (a daemon's state directory, as `/run` is on a real host).
fn tmpfs(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0711"),
    )
    .with_context(|| format!("mount a tmpfs on {}", dir.display()))
}

/// Pids whose command line contains `needle` and whose argv[0] ends with `name`.
fn pids_mentioning(needle: &str, name: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a0| a0.ends_with(name))
            && args.iter().any(|a| a.contains(needle))
        {
            out.push(pid);
        }
    }
    out
}

/// A runc bundle of the busybox image running `true`, from `runc spec`'s defaults.
fn runc_bundle(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(&rootfs)?;
    tar::Archive::new(&support::busybox_layer()[..]).unpack(&rootfs)?;
    run(Command::new("runc").args(["spec", "--bundle"]).arg(dir))?;
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&path)?)?;
    spec["process"]["args"] = serde_json::json!(["true"]);
    spec["process"]["terminal"] = serde_json::json!(false);
    fs::write(&path, spec.to_string())?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore = "benchmark: run by `make bench`"]
fn run_true_berth_vs_containerd() -> Result<()> {
    if !host::root_and_tools(
        "run benchmark",
        &["containerd", "ctr", "containerd-shim-runc-v2", "runc"],
    )? {
        return Ok(());
    }
    if !Path::new(support::BUSYBOX).exists() {
        bail!(
            "{} missing (Debian package busybox-static, scripts/install-deps.sh)",
            support::BUSYBOX
        );
    }
    let tmp = tempfile::Builder::new()
        .prefix("berth-bench-run")
        .tempdir()?;
    let work = tmp.path().to_owned();
    let _kill = KillBelow(work.clone());
    let archive = work.join("busybox.tar");
    fs::write(&archive, support::busybox_archive())?;

    tmpfs(&work.join("ctd/state"))?;
    let ctd = Containerd::start(&work.join("ctd"))?;
    run(ctd.ctr("bench").args(["images", "import"]).arg(&archive))?;
    let image = run(ctd.ctr("bench").args(["images", "ls", "-q"]))?
        .lines()
        .next()
        .context("ctr images import made no image")?
        .to_owned();
    let berth_dir = work.join("berth");
    tmpfs(&berth_dir.join("state"))?;
    let berthd = support::start_berthd(&berth_dir);
    support::berthctl_ok(
        &berthd.socket,
        &["images", "import", archive.to_str().unwrap()],
    );
    let bundle = work.join("bundle");
    runc_bundle(&bundle)?;
    let runc_root = work.join("runc");

    let ctr_run = |i: usize| {
        let mut c = ctd.ctr("bench");
        c.args(["run", "--rm", &image, &format!("bench-{i}"), "true"]);
        c
    };
    let berth_run = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berthctl"));
        c.arg("--address")
            .arg(&berthd.socket)
            .args(["run", "--rm", "busybox", "true"]);
        c
    };
    let runc_run = |i: usize| {
        let mut c = Command::new("runc");
        c.arg("--root")
            .arg(&runc_root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(format!("bench-{i}"));
        c
    };
    let (mut c_t, mut b_t, mut r_t) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..WARMUP + RUNS {
        let c = timed(&mut ctr_run(i))?;
        let b = timed(&mut berth_run())?;
        let r = timed(&mut runc_run(i))?;
        if i >= WARMUP {
            c_t.push(c);
            b_t.push(b);
            r_t.push(r);
        }
    }
    let spread = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        format!("min {:.1} ms, max {:.1} ms", ms(v[0]), ms(v[v.len() - 1]))
    };
    println!(
        "bench: run --rm true, {RUNS} runs each after {WARMUP} warm-up runs, alternating:\n  \
         containerd (ctr run --rm):  median {:.1} ms ({})\n  \
         berth (berthctl run --rm): median {:.1} ms ({})\n  \
         bare runc run:             median {:.1} ms ({})",
        ms(median(c_t.clone())),
        spread(&c_t),
        ms(median(b_t.clone())),
        spread(&b_t),
        ms(median(r_t.clone())),
        spread(&r_t),
    );
    let (c, b) = (median(c_t), median(b_t));
    println!(
        "bench: berth/containerd = {:.2} (goal: under 0.25)",
        b.as_secs_f64() / c.as_secs_f64()
    );

    // Idle memory: each daemon with one sleeping container.
    support::berthctl_ok(
        &berthd.socket,
        &["run", "-d", "--name", "idle", "busybox", "sleep", "1000"],
    );
    run(ctd
        .ctr("bench")
        .args(["run", "-d", &image, "idle", "sleep", "1000"]))?;
    std::thread::sleep(Duration::from_secs(2));
    let shim_pid: u32 = fs::read_to_string(berth_dir.join("state/shims/default/idle/shim.pid"))?
        .trim()
        .parse()?;
    let ctd_shims = pids_mentioning(&ctd.sock().to_string_lossy(), "containerd-shim-runc-v2");
    ensure!(
        ctd_shims.len() == 1,
        "expected one containerd shim, found {ctd_shims:?}"
    );
    let kib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    println!(
        "bench: idle RSS with one sleeping container: berthd {}, berth shim {}; \
         containerd {}, containerd-shim-runc-v2 {}",
        kib(rss_kib(berthd.child.id())?),
        kib(rss_kib(shim_pid)?),
        kib(rss_kib(ctd.pid())?),
        kib(rss_kib(ctd_shims[0])?),
    );
    let _ = support::berthctl(&berthd.socket, &["tasks", "kill", "-s", "KILL", "idle"]);
    let _ = run(ctd
        .ctr("bench")
        .args(["task", "kill", "-s", "SIGKILL", "idle"]));
    std::thread::sleep(Duration::from_millis(500));
    let _ = support::berthctl(&berthd.socket, &["tasks", "rm", "idle"]);
    let _ = support::berthctl(&berthd.socket, &["containers", "rm", "idle"]);
    let _ = run(ctd.ctr("bench").args(["task", "rm", "idle"]));
    let _ = run(ctd.ctr("bench").args(["containers", "rm", "idle"]));
    drop(berthd);
    // The state tmpfs mounts (detached here, so the generic cleanups report only real
    // leftovers; containerd keeps what it has open of its own until it stops).
    for d in [berth_dir.join("state"), work.join("ctd/state")] {
        let _ = nix::mount::umount2(&d, nix::mount::MntFlags::MNT_DETACH);
    }
    drop(ctd);
    host::unmount_below(&berth_dir);
    Ok(())
}
