//! ZFS in the ZFS test image (`make image-test-zfs`: `berth-image build --test --zfs`) with a
//! virtio disk carrying one GPT partition labelled `BERTH_ZFS`: init loads the ZFS modules and
//! creates the pool on that partition (the kernel command line configures `[zfs]`, with the
//! datasets `tank/conformance` only). The image's berthd drop-in names `tank/berth` as the
//! zfs snapshotter's parent dataset.
//!
//! `zfs_pool_snapshotter_and_container_run` (ignored; `make test-zfs`, one boot):
//! * `berthctl plugins ls` shows zfs skipped with the reason (`tank/berth` does not exist);
//! * in the guest the static `berth-snapshotter-conformance` runs the shared conformance
//!   suite against zfs on the real pool, without `128LayersMount` (minutes of `zfs` commands
//!   under TCG; the full suite is the ignored test below),
//! * the command-count check with 10 and 200 existing snapshots (constant count per
//!   operation, no command lists the pool),
//! * the cleanup check: a foreign snapshot, a dataset deleted behind berth's back and a
//!   failing destroy do not stop removal, and the reconciliation at open;
//! * then `tank/berth` is created, berthd is killed (init restarts it), zfs is loaded, the
//!   preloaded demo image is imported into the zfs snapshotter and
//!   `berthctl run --rm --snapshotter zfs localhost/berth/busybox:latest echo hi` prints hi;
//! * and `docker.io/library/edge-app:v1` is pulled with `--snapshotter zfs` from a real
//!   `docker-registry` on the host (pushed there with umoci and skopeo; the guest reaches it
//!   as the mirror `10.0.2.2:5000` through a `guestfwd`, the image being a ZFS variant whose
//!   `_default` hosts.toml is mirror-only) and run from zfs.
//!
//! The scenario boots a ZFS image variant (`VariantBuilder::zfs`), so it needs the module
//! cache that `make image-test-zfs` fills, and `docker-registry`, `umoci`, `skopeo` and
//! `/bin/busybox` on the host (`make deps`).
//!
//! `zfs_full_conformance` (ignored; `make test-zfs`, one boot): the whole suite.
//! Needs `sgdisk` (gdisk) on the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_test_support::registry;

use anyhow::{bail, Context, Result};
use berth_qemu_tests::image::VariantBuilder;
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};
use registry::{busybox_layout, push_layout, start_registry, RegistryConfig};

const READY: &str = r"berth-init: berth ready";
const CONFORMANCE: &str = berth_layout::paths::SNAPSHOTTER_CONFORMANCE;
const BERTHCTL: &str = "/usr/bin/berthctl";
const ZFS: &str = "/usr/sbin/zfs";
/// The demo image every image preloads (image-build/src/demo.rs).
const DEMO_ARCHIVE: &str = berth_layout::paths::DEMO_ARCHIVE;
const DEMO_IMAGE: &str = berth_layout::paths::DEMO_IMAGE;
/// Pulled from the host's registry through the mirror-only `_default` hosts.toml.
const PULLED_IMAGE: &str = "docker.io/library/edge-app:v1";
/// The registry as the guest sees it (a `guestfwd` to the host's loopback).
const MIRROR: &str = "10.0.2.2:5000";
/// Cases left to `make test-zfs`: 128 prepare+commit+mount rounds of slow `zfs` commands.
const SLOW_CASES: &str = "128LayersMount";
/// Hang guard for each in-guest run (TCG is slow; durations are printed, not asserted): the
/// quick subset takes ~3 min here, so 3x that and more.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// Hang guard for the whole conformance suite (128LayersMount: 128 rounds of `zfs` commands),
/// about 6–8 min on this project's machines: 900 s killed it on a host ~2.4x slower (issue 21),
/// so 3x of the loaded figure.
const FULL_SUITE_TIMEOUT: Duration = Duration::from_secs(2700);
/// `$BERTH_TEST_ZFS_IMAGE` or `<workspace>/out/image-test-zfs`.
const IMAGE_ENV: &str = "BERTH_TEST_ZFS_IMAGE";

/// A scratch directory removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sparse raw disk of `mib` MiB with one GPT partition named `label` spanning it.
fn gpt_disk(path: &Path, mib: u64, label: &str) -> Result<()> {
    std::fs::File::create(path)?.set_len(mib << 20)?;
    let out = Command::new("sgdisk")
        .args(["-n", "1:2048:0", "-t", "1:bf01", "-c"])
        .arg(format!("1:{label}"))
        .arg(path)
        .output()
        .context("cannot run sgdisk (apt-get install gdisk; `make deps` does)")?;
    if !out.status.success() {
        bail!("sgdisk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn zfs_image() -> Result<Image> {
    let dir = std::env::var_os(IMAGE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| berth_qemu_tests::image::workspace_dir().join("out/image-test-zfs"));
    Image::open(&dir).with_context(|| {
        format!(
            "the ZFS test image is missing in {}: run `make image-test-zfs` (or set {IMAGE_ENV})",
            dir.display()
        )
    })
}

/// Boots the ZFS test image on a fresh pool disk; returns the VM, its scratch directory
/// (removed on drop) and the boot time.
fn boot(name: &str) -> Result<(Vm, Scratch, Duration, Instant)> {
    boot_with(name, &zfs_image()?, None)
}

/// [`boot`] of `image`, with `nic` (a `-netdev` spec and a MAC) instead of the default NIC.
fn boot_with(
    name: &str,
    image: &Image,
    nic: Option<(&str, &str)>,
) -> Result<(Vm, Scratch, Duration, Instant)> {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("berth-zfs-{name}-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0)?;
    let disk = scratch.0.join("pool.img");
    gpt_disk(&disk, 512, "BERTH_ZFS")?;

    let started = Instant::now();
    let mut builder = Vm::builder(name)
        .image(image)
        .disk(&disk)
        .memory_mib(1024)
        .append(
            "berth.zfs.pool=tank berth.zfs.label=BERTH_ZFS berth.zfs.create=true \
             berth.zfs.datasets=tank/conformance",
        );
    if let Some((netdev, mac)) = nic {
        builder = builder.nic(netdev, mac);
    }
    let mut vm = builder.spawn()?;
    let created = vm.wait_for_line(r"zfs: pool tank created on /dev/vda1", BOOT_TIMEOUT)?;
    println!("{created}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let booted = started.elapsed();
    println!("booted with a new pool in {:.1} s", booted.as_secs_f64());
    Ok((vm, scratch, booted, started))
}

/// Runs `argv` in the guest, prints its output and time; the output when it exited 0.
fn run_in(agent: &mut berth_qemu_tests::AgentClient, what: &str, argv: &[&str]) -> Result<String> {
    run_in_for(agent, what, argv, RUN_TIMEOUT)
}

/// [`run_in`] with its own hang guard.
fn run_in_for(
    agent: &mut berth_qemu_tests::AgentClient,
    what: &str,
    argv: &[&str],
    timeout: Duration,
) -> Result<String> {
    let t = Instant::now();
    let out = agent.run_with(argv, None, timeout)?;
    println!(
        "--- {what} ({:.1} s, exit {}):\n{}{}",
        t.elapsed().as_secs_f64(),
        out.status,
        out.stdout,
        out.stderr
    );
    if out.status != 0 {
        bail!("{what} failed with exit status {}", out.status);
    }
    Ok(out.stdout)
}

/// Puts the suite's work directory (the snapshotters' roots and the flat reference trees the
/// cases compare mounts with) on a dataset of the pool: the guest's /var is a tmpfs, which
/// on this kernel (6.1) refuses user xattrs, so `SpecialFiles` could not build its reference.
fn suite_work_dir(agent: &mut berth_qemu_tests::AgentClient) -> Result<&'static str> {
    const WORK: &str = "/var/tmp/zfs-suite";
    run_in(
        agent,
        "suite work directory on zfs",
        &[
            ZFS,
            "create",
            "-o",
            &format!("mountpoint={WORK}"),
            "tank/suite-work",
        ],
    )?;
    Ok(WORK)
}

/// The zfs row of `berthctl plugins ls`.
fn zfs_plugin_row(vm: &Vm) -> Result<Option<String>> {
    let plugins = vm.berthctl_ok(&["plugins", "ls"], Duration::from_secs(90))?;
    Ok(plugins
        .stdout
        .lines()
        .find(|l| l.contains("snapshotter") && l.contains("zfs"))
        .map(str::to_string))
}

fn finish(mut vm: Vm, started: Instant, booted: Duration) -> Result<()> {
    vm.powerdown()?;
    let status = vm.wait_exit(Duration::from_secs(180))?;
    vm.check(status.success(), format!("QEMU exited with {status}"))?;
    println!(
        "zfs scenario: {:.1} s in total (boot {:.1} s)",
        started.elapsed().as_secs_f64(),
        booted.as_secs_f64()
    );
    Ok(())
}

#[test]
#[ignore = "needs the ZFS test image (dkms-built modules, ~4 min cold) and takes 6-10 min under TCG: \
            over the suite's 30-minute budget; run by `make test-zfs`"]
fn zfs_pool_snapshotter_and_container_run() -> Result<()> {
    // A registry on the host's loopback with one image, reachable from the guest as the
    // mirror 10.0.2.2:5000 only (as in tests/registry.rs); the image is a ZFS variant whose
    // `_default` hosts.toml sends every registry there.
    let tmp = tempfile::Builder::new()
        .prefix("berth-zfs-registry")
        .tempdir()?;
    let layout = busybox_layout(tmp.path())?;
    let registry = start_registry(&tmp.path().join("registry"), RegistryConfig::default())?;
    push_layout(
        &layout,
        "v1",
        &format!("{}/library/edge-app:v1", registry.addr),
        None,
        None,
    )?;
    let variant = VariantBuilder::new()?
        .zfs()
        .edit("certs.d/_default/hosts.toml", |_| {
            format!("server = \"http://{MIRROR}\"\n")
        })?
        .build()?;
    let port = registry.addr.rsplit(':').next().unwrap_or_default();
    let netdev = format!(
        "user,id=n0,net=10.0.2.0/24,host=10.0.2.254,\
         guestfwd=tcp:{MIRROR}-cmd:/bin/busybox nc 127.0.0.1 {port}"
    );
    let (mut vm, _scratch, booted, started) =
        boot_with("zfs", &variant.image, Some((&netdev, "52:54:00:12:70:07")))?;

    // berthd's drop-in names tank/berth, which does not exist yet: skipped, with the reason.
    let row = zfs_plugin_row(&vm)?;
    println!("plugins ls (no tank/berth): {row:?}");
    vm.check(
        row.as_deref().is_some_and(|r| {
            r.contains("skipped")
                && r.contains("\"tank/berth\" is unusable")
                && r.contains("does not exist")
        }),
        format!("zfs plugin row is not skipped with the missing dataset as reason: {row:?}"),
    )?;

    let mut agent = vm.agent()?;
    let work = suite_work_dir(&mut agent)?;
    let suite = run_in(
        &mut agent,
        "conformance suite (zfs), quick subset",
        &[
            CONFORMANCE,
            "zfs",
            work,
            "tank/conformance",
            "--skip",
            SLOW_CASES,
        ],
    );
    let scaling = run_in(
        &mut agent,
        "command counts with 10 and 200 snapshots",
        &[
            CONFORMANCE,
            "zfs-scaling",
            "/var/tmp/zfs-scaling",
            "tank/conformance",
            "10,200",
        ],
    );
    let cleanup = run_in(
        &mut agent,
        "cleanup and reconciliation",
        &[
            CONFORMANCE,
            "zfs-cleanup",
            "/var/tmp/zfs-cleanup",
            "tank/conformance",
        ],
    );

    // The engine on zfs: make its parent dataset, restart berthd (init does), unpack the
    // preloaded demo image into zfs and run a container on it.
    run_in(
        &mut agent,
        "create tank/berth",
        &[ZFS, "create", "-o", "mountpoint=none", "tank/berth"],
    )?;
    let t = Instant::now();
    let pids = agent.pidof("berthd")?;
    let &[old] = pids.as_slice() else {
        bail!("expected one berthd, found pids {pids:?}")
    };
    agent.kill(old, libc::SIGKILL)?;
    vm.wait_for_line(r"berth-init: berthd ready again", RUN_TIMEOUT)?;
    println!("berthd restarted in {:.1} s", t.elapsed().as_secs_f64());
    let row = zfs_plugin_row(&vm)?;
    println!("plugins ls (tank/berth made): {row:?}");
    vm.check(
        row.as_deref()
            .is_some_and(|r| r.split_whitespace().any(|w| w == "ok")),
        format!("zfs plugin not loaded after tank/berth was made: {row:?}"),
    )?;
    run_in(
        &mut agent,
        "import the demo image into zfs",
        &[
            BERTHCTL,
            "images",
            "import",
            "--snapshotter",
            "zfs",
            DEMO_ARCHIVE,
        ],
    )?;
    let hi = run_in(
        &mut agent,
        "run on zfs",
        &[
            BERTHCTL,
            "run",
            "--rm",
            "--snapshotter",
            "zfs",
            DEMO_IMAGE,
            "echo",
            "hi",
        ],
    )?;
    vm.check(
        hi.trim() == "hi",
        format!("the container printed {hi:?}, not \"hi\""),
    )?;
    // An image pulled from the registry (through the mirror) straight into zfs, then run.
    run_in(
        &mut agent,
        "pull into zfs",
        &[
            BERTHCTL,
            "images",
            "pull",
            "--snapshotter",
            "zfs",
            PULLED_IMAGE,
        ],
    )?;
    let pulled = run_in(
        &mut agent,
        "run the pulled image on zfs",
        &[
            BERTHCTL,
            "run",
            "--rm",
            "--snapshotter",
            "zfs",
            PULLED_IMAGE,
            "/bin/echo",
            "pulled into zfs",
        ],
    )?;
    vm.check(
        pulled.trim() == "pulled into zfs",
        format!("the pulled image's container printed {pulled:?}"),
    )?;
    let datasets = run_in(
        &mut agent,
        "datasets under tank/berth",
        &[
            ZFS,
            "list",
            "-H",
            "-r",
            "-t",
            "all",
            "-o",
            "name,origin",
            "tank/berth",
        ],
    )?;
    let committed = datasets
        .lines()
        .filter(|l| l.starts_with("tank/berth/") && l.contains("@snapshot"))
        .count();
    vm.check(
        committed >= 2,
        format!(
            "the imported and the pulled image's layers are not two committed zfs datasets:\n{datasets}"
        ),
    )?;
    drop(agent);
    suite?;
    scaling?;
    cleanup?;
    finish(vm, started, booted)
}

#[test]
#[ignore = "the whole conformance suite on ZFS: about 6 min under TCG (128LayersMount); `make test-zfs`"]
fn zfs_full_conformance() -> Result<()> {
    let (mut vm, _scratch, booted, started) = boot("zfs-full")?;
    let mut agent = vm.agent()?;
    let work = suite_work_dir(&mut agent)?;
    run_in_for(
        &mut agent,
        "conformance suite (zfs), all cases",
        &[CONFORMANCE, "zfs", work, "tank/conformance"],
        FULL_SUITE_TIMEOUT,
    )?;
    drop(agent);
    finish(vm, started, booted)
}

/// Where the bench keeps its pre-populated pool disk (outside the repository):
/// `$BERTH_BENCH_CACHE` or `/var/cache/berth/bench`.
fn bench_cache_dir() -> PathBuf {
    std::env::var_os("BERTH_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth/bench"))
}

/// The cache key of the populated pool: the image's ZFS build (zfs-dkms version and kernel
/// release, from its manifest) and the layout version of what the bench populates.
fn bench_pool_name(image_dir: &Path) -> Result<String> {
    let manifest = image_dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("read {}", manifest.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", manifest.display()))?;
    let zfs = &v["zfs"];
    let (Some(dkms), Some(release)) = (zfs["dkms_version"].as_str(), zfs["release"].as_str())
    else {
        bail!(
            "{} has no zfs section: not a --zfs image",
            manifest.display()
        );
    };
    Ok(format!("zfs-bench-pool_{release}_zfs-{dkms}_v1.img"))
}

/// `make bench`: Prepare+Commit latency with 10, 100 and 1,000 existing snapshots, in the
/// guest on a real pool. The populated pool disk (with the snapshotters' roots on a dataset
/// of the same pool) is cached, keyed by the ZFS build, so only the first run populates.
#[test]
#[ignore = "benchmark (make bench): Prepare+Commit latency with 10, 100 and 1000 snapshots on ZFS in QEMU"]
fn zfs_bench_prepare_commit_latency() -> Result<()> {
    let image_dir = std::env::var_os(IMAGE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| berth_qemu_tests::image::workspace_dir().join("out/image-test-zfs"));
    let image = zfs_image()?;
    let cache = bench_cache_dir();
    let cached = cache.join(bench_pool_name(&image_dir)?);
    let scratch =
        Scratch(std::env::temp_dir().join(format!("berth-zfs-bench-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0)?;
    let disk = scratch.0.join("pool.img");
    let reused = cached.exists();
    if reused {
        let out = Command::new("cp")
            .arg("--sparse=always")
            .arg(&cached)
            .arg(&disk)
            .output()
            .context("run cp")?;
        if !out.status.success() {
            bail!(
                "cp {} failed: {}",
                cached.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        println!("reusing the populated pool {}", cached.display());
    } else {
        gpt_disk(&disk, 2048, "BERTH_ZFS")?;
        println!("no cached pool at {}: populating", cached.display());
    }

    let started = Instant::now();
    let mut vm = Vm::builder("zfs-bench")
        .image(&image)
        .disk(&disk)
        .memory_mib(1024)
        .append(
            "berth.zfs.pool=tank berth.zfs.label=BERTH_ZFS berth.zfs.create=true \
             berth.zfs.datasets=tank/bench",
        )
        .spawn()?;
    let pool = vm.wait_for_line(r"zfs: pool tank (created|imported)", BOOT_TIMEOUT)?;
    println!("{pool}");
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let mut agent = vm.agent()?;
    // The snapshotters' roots (their records) live on the pool too, so the cache holds both.
    const ROOTS: &str = "/var/tmp/zfs-bench";
    let has_roots = agent.run(&[ZFS, "list", "-H", "-o", "name", "tank/bench-roots"])?;
    if has_roots.status == 0 {
        run_in(
            &mut agent,
            "mount the roots",
            &[ZFS, "mount", "tank/bench-roots"],
        )?;
    } else {
        run_in(
            &mut agent,
            "create the roots",
            &[
                ZFS,
                "create",
                "-o",
                &format!("mountpoint={ROOTS}"),
                "tank/bench-roots",
            ],
        )?;
    }
    // Populating 1,000 snapshots the first time takes many minutes under TCG.
    run_in_for(
        &mut agent,
        "prepare+commit latency",
        &[
            CONFORMANCE,
            "zfs-bench",
            ROOTS,
            "tank/bench",
            "10,100,1000",
            "20",
        ],
        Duration::from_secs(3600),
    )?;
    run_in(
        &mut agent,
        "export the pool",
        &["/usr/sbin/zpool", "export", "tank"],
    )?;
    drop(agent);
    vm.powerdown()?;
    let status = vm.wait_exit(Duration::from_secs(180))?;
    vm.check(status.success(), format!("QEMU exited with {status}"))?;
    if !reused {
        std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
        let tmp = cached.with_extension("img.tmp");
        let out = Command::new("cp")
            .arg("--sparse=always")
            .arg(&disk)
            .arg(&tmp)
            .output()
            .context("run cp")?;
        if !out.status.success() {
            bail!(
                "cp to {} failed: {}",
                tmp.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::rename(&tmp, &cached)
            .with_context(|| format!("rename {} to {}", tmp.display(), cached.display()))?;
        println!("cached the populated pool as {}", cached.display());
    }
    println!(
        "zfs bench: {:.1} s in total",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
