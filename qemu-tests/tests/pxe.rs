//! PXE: a diskless node boots from the network the way a cluster node does. QEMU's virtio
//! NIC runs its iPXE ROM (no `-kernel`), which gets `boot.ipxe` (written by `berth-image
//! pxe`) over TFTP from QEMU's user network, then fetches `vmlinuz` and `initramfs.img` over
//! HTTP from a server on host loopback (`10.0.2.2` in the guest). The kernel command line in
//! the script carries a static `ip=` and `berth.config=<url>`; berth-init applies the address,
//! fetches that URL from the same server and layers it, so a key set only there (the host
//! name) takes effect, and a bad key in it is reported with the URL and line. No disk: `/var`
//! is a tmpfs. One boot. Needs the test image and the static `berth-image`
//! (`make static image-test`) and `ipxe-qemu`.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_qemu_tests::http::HttpServer;
use berth_qemu_tests::image::release_dir;
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::{Image, Vm};

/// The fetched document: the host name is set only here; `max_failures` is wrong on line 6.
const NODE_TOML: &str = "# served to berth-init through berth.config
[network]
hostname = \"pxe-fetched\"

[berthd]
max_failures = \"x\"
";

/// Network boot adds firmware DHCP, TFTP and two HTTP downloads to a normal boot.
const PXE_BOOT_TIMEOUT: Duration = Duration::from_secs(BOOT_TIMEOUT.as_secs() + 120);

#[test]
fn diskless_node_boots_over_ipxe_and_applies_ip_and_fetched_config() -> Result<()> {
    let image = Image::test_image()?;
    let www = tempfile::tempdir()?;
    let server = HttpServer::serve(www.path())?;
    let base = server.guest_url();
    let config_url = format!("{base}/node.toml");
    fs::write(www.path().join("node.toml"), NODE_TOML)?;
    let ip = "ip=10.0.2.15::10.0.2.2:255.255.255.0:pxe-node:eth0:off";

    // The PXE artefacts, made by the real CLI into the directory the server serves; the same
    // directory is QEMU's TFTP root, from which only boot.ipxe is read.
    let berth_image = release_dir().join("berth-image");
    let out = Command::new(&berth_image)
        .arg("pxe")
        .arg("--image")
        .arg(&image.dir)
        .arg("--out")
        .arg(www.path())
        .args(["--base-url", &base, "--append", ip])
        .arg("--append")
        .arg(format!("berth.config={config_url}"))
        .output()
        .with_context(|| format!("cannot run {}", berth_image.display()))?;
    ensure!(
        out.status.success(),
        "berth-image pxe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    let script = fs::read_to_string(www.path().join("boot.ipxe"))?;
    println!("boot.ipxe:\n{script}");

    let spawned = Instant::now();
    let mut vm = Vm::builder("pxe")
        .network_boot(www.path(), "boot.ipxe")
        .spawn()?;
    let since_spawn = |at: Duration| {
        (server.started() + at)
            .saturating_duration_since(spawned)
            .as_secs_f64()
    };
    let ready = vm.wait_for_line(r"berth-init: berth ready", PXE_BOOT_TIMEOUT)?;
    let ready_at = spawned.elapsed();
    println!("{ready}");
    let console = vm.console_text();
    let line = |pattern: &str| -> Result<String> {
        let re = regex::Regex::new(pattern)?;
        console
            .lines()
            .find(|l| re.is_match(l))
            .map(str::to_string)
            .with_context(|| format!("no console line matches {pattern:?}"))
    };

    // Firmware path: iPXE fetched kernel and initramfs over HTTP, whole; then init the config.
    let requests = server.requests();
    for r in &requests {
        println!(
            "http: {} {} -> {} ({} bytes) at +{:.2} s after QEMU start, took {:.2} s, {}",
            r.method,
            r.path,
            r.status,
            r.bytes,
            since_spawn(r.at),
            r.took.as_secs_f64(),
            r.user_agent
        );
    }
    for (path, file) in [
        ("/vmlinuz", &image.kernel),
        ("/initramfs.img", &image.initramfs),
    ] {
        let size = fs::metadata(file)?.len();
        let fetched = requests
            .iter()
            .find(|r| r.path == path && r.status == 200)
            .with_context(|| format!("iPXE never fetched {path}: {requests:?}"))?;
        vm.check(
            fetched.bytes == size && fetched.user_agent.starts_with("iPXE"),
            format!("{path}: {fetched:?}, expected {size} bytes to iPXE"),
        )?;
    }
    let config_get = requests
        .iter()
        .find(|r| r.path == "/node.toml")
        .context("berth-init never fetched berth.config")?;
    vm.check(
        config_get.status == 200 && config_get.user_agent.starts_with("berth-init/"),
        format!("config fetch: {config_get:?}"),
    )?;

    // ip= applied, the fetched file layered (its bad key named by URL and line), diskless.
    let static_ip = line(r"network: eth0: static 10\.0\.2\.15/24, gateway 10\.0\.2\.2")?;
    let applied = line(&format!(r"config: {} applied", regex::escape(&config_url)))?;
    let bad_key = line(&format!(
        r"{}:6: key berthd\.max_failures: .*; key ignored",
        regex::escape(&config_url)
    ))?;
    let hostname_line = line(r"network: host name pxe-fetched \(from berth\.config\)")?;
    let diskless = line(r"storage: no partition labelled BERTH_STATE: diskless node")?;
    for l in [&static_ip, &applied, &bad_key, &hostname_line, &diskless] {
        println!("{l}");
    }

    // From inside the guest: the command line came from the script, the host name from the
    // fetched file (ip= said pxe-node), /var is a tmpfs.
    let mut agent = vm.agent()?;
    let cmdline = String::from_utf8(agent.read_file("/proc/cmdline")?)?;
    vm.check(
        cmdline.contains("initrd=initramfs.img") && cmdline.contains(&config_url),
        format!("/proc/cmdline is not the script's: {cmdline:?}"),
    )?;
    let hostname = String::from_utf8(agent.read_file("/proc/sys/kernel/hostname")?)?;
    vm.check(
        hostname.trim() == "pxe-fetched",
        format!("host name {hostname:?}, expected pxe-fetched from {config_url}"),
    )?;
    let mounts = String::from_utf8(agent.read_file("/proc/mounts")?)?;
    vm.check(
        mounts.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(1..3) == Some(&["/var", "tmpfs"][..])
        }),
        format!("/var is not a tmpfs:\n{mounts}"),
    )?;
    let route = String::from_utf8(agent.read_file("/proc/net/route")?)?;
    vm.check(
        route
            .lines()
            .any(|l| l.starts_with("eth0\t00000000\t0202000A")),
        format!("no default route via 10.0.2.2 on eth0:\n{route}"),
    )?;

    // The boot timeline (with the berth.config stage) and init's RSS after the fetch.
    let status = vm.berthctl_system(&["status"], Duration::from_secs(90))?;
    let summary = status.stdout.lines().next().unwrap_or_default().to_string();
    println!("{summary}");
    let stage = status
        .stdout
        .lines()
        .find(|l| l.starts_with("berth.config"))
        .map(str::to_string);
    vm.check(
        stage.is_some(),
        format!("no berth.config stage in system status:\n{}", status.stdout),
    )?;
    println!("{}", stage.unwrap_or_default());

    let kernel_get = requests.iter().find(|r| r.path == "/vmlinuz");
    let initrd_get = requests.iter().find(|r| r.path == "/initramfs.img");
    println!(
        "durations: QEMU start -> kernel request {:.2} s; kernel + initramfs download {:.2} s; \
         config fetch at +{:.2} s; berth ready {:.2} s after QEMU start (uptime {})",
        kernel_get.map(|r| since_spawn(r.at)).unwrap_or(f64::NAN),
        kernel_get.zip(initrd_get).map_or(f64::NAN, |(k, i)| {
            since_spawn(i.at + i.took) - since_spawn(k.at)
        }),
        since_spawn(config_get.at),
        ready_at.as_secs_f64(),
        berth_qemu_tests::vm::line_uptime(&ready)
            .map(|u| format!("{u:.2} s"))
            .unwrap_or_else(|| "?".into()),
    );
    Ok(())
}
