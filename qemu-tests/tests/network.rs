//! Networking, host name and time of a berth test image under QEMU.
//!
//! QEMU's user network (slirp) is the DHCP server; each scenario picks a random subnet and
//! DHCP start address so no hard-coded address can pass. What the guest configured is read
//! from inside through the test agent (`/proc/net/fib_trie`, `/proc/net/route`,
//! `/etc/resolv.conf`, `/proc/sys/kernel/hostname`: the image has no `ip`). Renew and rebind
//! run against dnsmasq in a network namespace, the guest on a tap device there (root only);
//! `init/tests/dhcp_netns.rs` checks the same on the wire without a VM.
//!
//! Needs the test image (`make image-test`) and the static binaries (`make static`); run one
//! at a time: `cargo test -p berth-qemu-tests --test network -- --test-threads=1`.

use std::net::UdpSocket;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use berth_qemu_tests::image::VariantBuilder;
use berth_qemu_tests::vm::{line_uptime, BOOT_TIMEOUT};
use berth_qemu_tests::{Image, Vm};

/// Init's readiness line.
const READY: &str = r"berth-init: berth ready";

/// A random /24 in 10.100.0.0–10.199.255.0, a DHCP start address in it (.20–.199) and a
/// locally administered MAC, from the clock and the pid.
struct Subnet {
    prefix: String,
    start: String,
}

fn random() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    // splitmix64 of the clock and the pid.
    let mut z = nanos ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Subnet {
    fn random() -> Self {
        let r = random();
        let prefix = format!("10.{}.{}", 100 + r % 100, (r >> 8) % 256);
        let start = format!("{prefix}.{}", 20 + (r >> 16) % 180);
        Self { prefix, start }
    }

    /// `.n` of the subnet.
    fn host(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }

    /// The QEMU user network serving this subnet.
    fn user_netdev(&self, id: &str) -> String {
        format!(
            "user,id={id},net={}.0/24,dhcpstart={}",
            self.prefix, self.start
        )
    }
}

fn random_mac() -> String {
    let r = random();
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        r & 0xff,
        (r >> 8) & 0xff,
        (r >> 16) & 0xff
    )
}

/// Addresses the guest's kernel holds as local (`/32 host LOCAL` entries of fib_trie).
fn local_addresses(fib_trie: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut last = None;
    for line in fib_trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-', '`']).trim();
        if line.contains("/32 host LOCAL") {
            if let Some(a) = last.take() {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        } else if t.split('.').count() == 4 && t.split('.').all(|p| p.parse::<u8>().is_ok()) {
            last = Some(t.to_string());
        }
    }
    out
}

/// Gateway of the default route on `iface` from `/proc/net/route` (little-endian hex).
fn default_gateway(route: &str, iface: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[0] == iface && f[1] == "00000000").then(|| {
            let g = u32::from_str_radix(f[2], 16).ok()?;
            let b = g.to_le_bytes();
            Some(format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3]))
        })?
    })
}

/// The guest's view: (local addresses, /proc/net/route, /etc/resolv.conf, host name).
fn guest_view(vm: &mut Vm) -> Result<(Vec<String>, String, String, String)> {
    let mut agent = vm.agent()?;
    let read = |agent: &mut berth_qemu_tests::client::AgentClient, path: &str| -> Result<String> {
        Ok(String::from_utf8_lossy(
            &agent
                .read_file(path)
                .with_context(|| format!("reading {path}"))?,
        )
        .into_owned())
    };
    let fib = read(&mut agent, "/proc/net/fib_trie")?;
    let route = read(&mut agent, "/proc/net/route")?;
    // Through the image's /etc/resolv.conf -> /run/berth/resolv.conf symlink.
    let resolv = read(&mut agent, "/etc/resolv.conf")?;
    let hostname = read(&mut agent, "/proc/sys/kernel/hostname")?
        .trim()
        .to_string();
    Ok((local_addresses(&fib), route, resolv, hostname))
}

fn print_line(vm: &Vm, pattern: &str) {
    for line in vm.console_text().lines().filter(|l| l.contains(pattern)) {
        println!("console: {}", line.trim());
    }
}

#[test]
fn dhcp_on_a_random_user_network() -> Result<()> {
    let net = Subnet::random();
    let mac = random_mac();
    println!(
        "user network {}.0/24, dhcpstart {}, mac {mac}",
        net.prefix, net.start
    );
    let mut vm = Vm::builder("dhcp")
        .image(&Image::test_image()?)
        .nic(&net.user_netdev("n0"), &mac)
        .spawn()?;
    let lease = vm.wait_for_line(
        &format!(
            r"network: eth0: DHCP lease {}/24",
            regex::escape(&net.start)
        ),
        BOOT_TIMEOUT,
    )?;
    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!("{lease}\n{ready}");
    if let (Some(l), Some(r)) = (line_uptime(&lease), line_uptime(&ready)) {
        println!("kernel uptime at the lease: {l:.3} s, at `berth ready`: {r:.3} s");
    }
    let (addresses, route, resolv, hostname) = guest_view(&mut vm)?;
    println!("guest addresses {addresses:?}, host name {hostname}\n{resolv}");
    vm.check(
        addresses.contains(&net.start),
        format!("{} not among {addresses:?}", net.start),
    )?;
    vm.check(
        default_gateway(&route, "eth0") == Some(net.host(2)),
        format!("default route not via {}: {route}", net.host(2)),
    )?;
    vm.check(
        resolv.contains(&format!("nameserver {}\n", net.host(3))),
        format!("resolv.conf: {resolv}"),
    )?;
    vm.check(
        hostname == format!("berth-{}", mac.replace(':', "")),
        format!("host name {hostname}"),
    )?;
    Ok(())
}

/// The network stage's duration from init's `boot stages: …` console line.
fn network_stage(summary: &str) -> Option<&str> {
    summary
        .split([':', ',', ';'])
        .map(str::trim)
        .find_map(|part| part.strip_prefix("network "))
}

/// QEMU's default NIC (what `qemu-system-x86_64` adds without `-nic` or `-nodefaults`) is an
/// e1000, which Debian's cloud kernel has no driver for: init names it once, by PCI id, and
/// does not wait `[network] wait_secs` for an interface that cannot appear (issue 21; the
/// network stage took the whole 10 s before).
#[test]
fn nic_no_driver_can_bind_is_named_once_and_not_waited_for() -> Result<()> {
    let mut vm = Vm::builder("e1000")
        .image(&Image::test_image()?)
        .args(["-nic", "user,model=e1000"])
        .spawn()?;
    let named = vm.wait_for_line(
        r"network: no driver in this image for PCI network device",
        BOOT_TIMEOUT,
    )?;
    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    vm.wait_for("init's boot stages line", BOOT_TIMEOUT, |vm| {
        vm.console_text().contains("berth-init: boot stages: ")
    })?;
    let console = vm.console_text();
    let summary = console
        .lines()
        .find(|l| l.contains("berth-init: boot stages: "))
        .unwrap_or_default()
        .to_string();
    println!(
        "{named}
{ready}
{summary}"
    );
    if let Some(uptime) = line_uptime(&ready) {
        println!(
            "kernel uptime at `berth ready` with an e1000: {uptime:.3} s; network stage: {}",
            network_stage(&summary).unwrap_or("?")
        );
    }
    vm.check(
        named.contains("8086:100e") && named.contains("not waiting"),
        format!("the line does not name the e1000's PCI id: {named:?}"),
    )?;
    let mentions = console
        .lines()
        .filter(|l| l.contains("berth-init"))
        .filter(|l| l.contains("8086:100e") || l.contains("PCI network device(s) but"))
        .count();
    vm.check(
        mentions == 1,
        format!("init names the device on {mentions} lines, expected one"),
    )?;
    Ok(())
}

#[test]
fn ip_argument_configures_a_static_address_and_host_name() -> Result<()> {
    let net = Subnet::random();
    let client = net.host(60);
    // nfsroot form: client:server:gw:netmask:hostname:device:autoconf:dns0:dns1:ntp0
    let ip = format!(
        "ip={client}::{}:255.255.255.0:pxe-node:eth0:off:{}::",
        net.host(2),
        net.host(3)
    );
    println!("{ip}");
    let mut vm = Vm::builder("ip-arg")
        .image(&Image::test_image()?)
        .nic(&net.user_netdev("n0"), &random_mac())
        .append(&ip)
        .spawn()?;
    let line = vm.wait_for_line(
        &format!(r"network: eth0: static {}/24", regex::escape(&client)),
        BOOT_TIMEOUT,
    )?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!("{line}");
    let (addresses, route, resolv, hostname) = guest_view(&mut vm)?;
    vm.check(
        addresses.contains(&client),
        format!("{client} not among {addresses:?}"),
    )?;
    vm.check(
        !addresses.contains(&net.start),
        "DHCP ran despite autoconf off",
    )?;
    vm.check(
        default_gateway(&route, "eth0") == Some(net.host(2)),
        format!("default route: {route}"),
    )?;
    vm.check(
        resolv.contains(&format!("nameserver {}\n", net.host(3))),
        format!("resolv.conf: {resolv}"),
    )?;
    vm.check(hostname == "pxe-node", format!("host name {hostname}"))?;
    Ok(())
}

#[test]
fn static_config_bad_address_and_unknown_interface() -> Result<()> {
    let (a, b) = (Subnet::random(), Subnet::random());
    let (mac_a, mac_b) = (random_mac(), random_mac());
    let static_ip = a.host(50);
    let interfaces = format!(
        "\n[[network.interface]]\nmatch = \"eth0\"\naddresses = [\"{static_ip}/24\"]\ngateway = \"{}\"\n\
         dns = [\"{}\"]\nsearch = [\"edge.test\"]\n\n[[network.interface]]\nmatch = \"{mac_b}\"\n\
         addresses = [\"10.0.0.300/24\"]\n\n[[network.interface]]\nmatch = \"ens99\"\n",
        a.host(2),
        a.host(3)
    );
    let mut bad_line = 0;
    let variant = VariantBuilder::new()?
        .edit("init.toml", |text| {
            // [[network.interface]] headers are absolute: appending them is valid anywhere.
            let edited = text.replacen("hostname = \"\"", "hostname = \"edge-7\"", 1) + &interfaces;
            assert!(
                edited.contains("hostname = \"edge-7\""),
                "[network] hostname in configs/init.toml"
            );
            bad_line = edited
                .lines()
                .position(|l| l.contains("10.0.0.300"))
                .unwrap()
                + 1;
            edited
        })?
        .build()?;
    let mut vm = Vm::builder("static")
        .image(&variant.image)
        .nic(&a.user_netdev("n0"), &mac_a)
        .nic(&b.user_netdev("n1"), &mac_b)
        .spawn()?;
    let error = vm.wait_for_line(
        r"error: /etc/berth/init.toml:\d+: key network\.interface\[1\]",
        BOOT_TIMEOUT,
    )?;
    let ready = vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let console = vm.console_text();
    let warning = console
        .lines()
        .find(|l| l.contains("ens99"))
        .unwrap_or_default()
        .to_string();
    println!("{error}\n{warning}\n{ready}");
    print_line(&vm, "network: eth");
    vm.check(
        error.contains(&format!("init.toml:{bad_line}:")),
        format!("line {bad_line} not named: {error}"),
    )?;
    vm.check(
        error.contains("10.0.0.300") && error.contains("fall back to DHCP"),
        format!("unclear: {error}"),
    )?;
    vm.check(
        console.lines().filter(|l| l.contains("10.0.0.300")).count() == 1,
        "the bad address is reported more than once",
    )?;
    vm.check(
        warning.contains("warning: network: interface \"ens99\" matches no interface"),
        format!("no warning for the unmatched entry: {warning:?}"),
    )?;
    vm.check(
        console.lines().filter(|l| l.contains("ens99")).count() == 1,
        "the unmatched entry is reported more than once",
    )?;
    let (addresses, route, resolv, hostname) = guest_view(&mut vm)?;
    println!("guest addresses {addresses:?}, host name {hostname}\n{resolv}");
    vm.check(
        addresses.contains(&static_ip),
        format!("static {static_ip} not among {addresses:?}"),
    )?;
    vm.check(
        !addresses.contains(&a.start),
        "DHCP ran on the static interface",
    )?;
    vm.check(
        addresses.contains(&b.start),
        format!(
            "eth1 fell back to DHCP but has no {} in {addresses:?}",
            b.start
        ),
    )?;
    vm.check(
        default_gateway(&route, "eth0") == Some(a.host(2)),
        format!("default route: {route}"),
    )?;
    vm.check(
        resolv.contains(&format!("nameserver {}\n", a.host(3))),
        format!("resolv.conf: {resolv}"),
    )?;
    vm.check(
        resolv.contains("search edge.test"),
        format!("resolv.conf: {resolv}"),
    )?;
    vm.check(hostname == "edge-7", format!("host name {hostname}"))?;
    Ok(())
}

#[test]
fn hot_plugged_nic_gets_a_lease() -> Result<()> {
    let net = Subnet::random();
    let mac = random_mac();
    let mut vm = Vm::builder("hotplug")
        .image(&Image::test_image()?)
        .spawn()?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let added = Instant::now();
    let out = vm.monitor(&format!("netdev_add {}", net.user_netdev("hp0")))?;
    println!("netdev_add: {:?}", out.trim());
    let out = vm.monitor(&format!(
        "device_add virtio-net-pci,netdev=hp0,id=hpnic0,mac={mac}"
    ))?;
    println!("device_add: {:?}", out.trim());
    let lease = vm.wait_for_line(
        &format!(
            r"network: eth\d+: DHCP lease {}/24",
            regex::escape(&net.start)
        ),
        BOOT_TIMEOUT,
    )?;
    println!(
        "{lease}\ndevice_add -> lease line: {:.3} s",
        added.elapsed().as_secs_f64()
    );
    let (addresses, _, _, _) = guest_view(&mut vm)?;
    vm.check(
        addresses.contains(&net.start),
        format!("{} not among {addresses:?}", net.start),
    )?;
    Ok(())
}

/// Answers SNTP requests on host loopback with the host's clock (stratum 2).
fn sntp_responder() -> Result<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let port = sock.local_addr()?.port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 128];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 48 {
                continue;
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let secs = now.as_secs() + 2_208_988_800;
            let frac = (u64::from(now.subsec_nanos()) << 32) / 1_000_000_000;
            let ts = ((secs & 0xffff_ffff) << 32 | frac).to_be_bytes();
            let mut p = [0u8; 48];
            p[0] = 4 << 3 | 4; // version 4, server
            p[1] = 2;
            p[24..32].copy_from_slice(&buf[40..48]); // originate = the client's transmit
            p[32..40].copy_from_slice(&ts);
            p[40..48].copy_from_slice(&ts);
            let _ = sock.send_to(&p, peer);
        }
    });
    Ok(port)
}

#[test]
fn clock_is_stepped_from_an_sntp_server() -> Result<()> {
    let port = sntp_responder()?;
    let net = Subnet::random();
    // The user network maps its .2 to the host's loopback.
    let server = format!("{}:{port}", net.host(2));
    let mut vm = Vm::builder("sntp")
        .image(&Image::test_image()?)
        .nic(&net.user_netdev("n0"), &random_mac())
        .args(["-rtc", "base=2001-01-01T00:00:00"])
        .append(&format!("berth.time.servers={server}"))
        .spawn()?;
    let stepped = vm.wait_for_line(r"time: stepped the clock by", BOOT_TIMEOUT)?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!("{stepped}");
    let guest = vm.agent()?.time()?;
    let host = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let diff = (host - guest) as f64 / 1e9;
    println!("host - guest after the step: {diff:+.3} s");
    let offset: f64 = stepped
        .split("by ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.trim_start_matches('+').parse().ok())
        .with_context(|| format!("no offset in {stepped:?}"))?;
    println!(
        "offset applied: {offset:+.3} s ({:.1} years)",
        offset / (365.25 * 86400.0)
    );
    // The RTC says 2001; the clock floor (the image's build time) raises it first, and SNTP
    // steps it from there to the host's time.
    let console = vm.console_text();
    vm.check(
        console.contains("the clock said 2001-01-01"),
        "no clock-floor line naming the RTC's 2001 on the console",
    )?;
    vm.check(
        offset > 0.0,
        format!("SNTP did not step the clock forward from the floor: {stepped}"),
    )?;
    // Generous: a TCG guest under load answers slowly; the step itself is exact to the delay.
    vm.check(
        diff.abs() < 30.0,
        format!("guest clock {diff:+.3} s off the host's after the step"),
    )?;
    Ok(())
}

/// dnsmasq on host loopback port 53 that knows one name and forwards nothing; killed on drop.
struct HostResolver(std::process::Child);

impl HostResolver {
    fn start(name: &str, address: &str) -> Result<Self> {
        let child = std::process::Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .args([
                "--listen-address=127.0.0.1",
                "--port=53",
                "--user=root",
                "--pid-file=",
                "--log-queries",
            ])
            .arg(format!("--address=/{name}/{address}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context(
                "cannot start dnsmasq (apt-get install dnsmasq-base; scripts/install-deps.sh)",
            )?;
        let mut resolver = Self(child);
        std::thread::sleep(std::time::Duration::from_millis(300));
        if let Some(status) = resolver.0.try_wait()? {
            let mut err = String::new();
            if let Some(mut e) = resolver.0.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            anyhow::bail!("dnsmasq on 127.0.0.1:53 exited ({status}): {}", err.trim());
        }
        Ok(resolver)
    }
}

impl Drop for HostResolver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn resolves_a_name_only_the_host_resolver_knows() -> Result<()> {
    let name = format!("only-host-{}.test", random() % 100_000);
    let _resolver = HostResolver::start(&name, "10.9.8.7")?;
    let net = Subnet::random();
    // The user network forwards UDP to its .2 to the host's loopback: name server = .2.
    let mut vm = Vm::builder("dns")
        .image(&Image::test_image()?)
        .nic(&net.user_netdev("n0"), &random_mac())
        .append(&format!("berth.network.dns={}", net.host(2)))
        .spawn()?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    let asked = Instant::now();
    let (server, addresses) = vm.agent()?.resolve(&name)?;
    println!(
        "{name} -> {addresses:?} from {server} in {:.3} s",
        asked.elapsed().as_secs_f64()
    );
    vm.check(
        server == format!("{}:53", net.host(2)),
        format!("asked {server}, not the configured server first"),
    )?;
    vm.check(
        addresses == ["10.9.8.7"],
        format!("{name} resolved to {addresses:?}"),
    )?;
    Ok(())
}

/// A network namespace with a tap device and dnsmasq serving short leases on it; QEMU runs
/// inside the namespace (through a wrapper script) with the guest's NIC on the tap. Removed on
/// drop (dnsmasq killed, namespace deleted with its tap).
struct TapNet {
    ns: String,
    tap: String,
    dir: tempfile::TempDir,
    dnsmasq: Option<std::process::Child>,
}

impl TapNet {
    fn new() -> Result<Self> {
        let id = std::process::id() % 100_000;
        let net = TapNet {
            ns: format!("berth-tap-{id}"),
            tap: format!("btap{id}"),
            dir: tempfile::tempdir()?,
            dnsmasq: None,
        };
        net.ip(&["netns", "add", &net.ns])?;
        net.ip(&[
            "-n", &net.ns, "tuntap", "add", "dev", &net.tap, "mode", "tap",
        ])?;
        net.ip(&["-n", &net.ns, "link", "set", &net.tap, "up"])?;
        net.ip(&["-n", &net.ns, "link", "set", "lo", "up"])?;
        Ok(net)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let out = std::process::Command::new("ip").args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// (Re)starts dnsmasq answering from `server` (10.78.0.x): 2-minute leases, T1 8 s, T2 16 s.
    fn serve_from(&mut self, server: &str, old: Option<&str>) -> Result<()> {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(old) = old {
            self.ip(&[
                "-n",
                &self.ns,
                "addr",
                "del",
                &format!("{old}/24"),
                "dev",
                &self.tap,
            ])?;
        }
        self.ip(&[
            "-n",
            &self.ns,
            "addr",
            "add",
            &format!("{server}/24"),
            "dev",
            &self.tap,
        ])?;
        let dir = self.dir.path();
        let child = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
            ])
            .args([
                "--port=0",
                "--bind-interfaces",
                "--user=root",
                "--dhcp-authoritative",
            ])
            .arg(format!("--interface={}", self.tap))
            .arg("--dhcp-range=10.78.0.50,10.78.0.60,255.255.255.0,2m")
            .args(["--dhcp-option=option:T1,8", "--dhcp-option=option:T2,16"])
            .arg(format!("--dhcp-option=option:router,{server}"))
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg("--log-dhcp")
            .arg(format!("--log-facility={}", dir.join("log").display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot start dnsmasq (apt-get install dnsmasq-base)")?;
        self.dnsmasq = Some(child);
        std::thread::sleep(std::time::Duration::from_millis(300));
        Ok(())
    }

    /// A script that runs QEMU inside the namespace.
    fn qemu_wrapper(&self) -> Result<std::path::PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join("qemu-in-netns");
        let qemu = std::env::var("BERTH_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into());
        std::fs::write(
            &path,
            format!("#!/bin/sh\nexec ip netns exec {} {qemu} \"$@\"\n", self.ns),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(path)
    }
}

impl Drop for TapNet {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.ns])
            .status();
    }
}

#[test]
fn lease_is_renewed_then_rebound_on_a_tap_device() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root (network namespace and tap device)");
        return Ok(());
    }
    let mut net = TapNet::new()?;
    net.serve_from("10.78.0.1", None)?;
    let mut vm = Vm::builder("tap-renew")
        .image(&Image::test_image()?)
        .program(net.qemu_wrapper()?)
        .nic(
            &format!("tap,id=n0,ifname={},script=no,downscript=no", net.tap),
            &random_mac(),
        )
        .spawn()?;
    let lease = vm.wait_for_line(
        r"network: eth0: DHCP lease 10\.78\.0\.\d+/24 from 10\.78\.0\.1,",
        BOOT_TIMEOUT,
    )?;
    println!("{lease}");
    let bound = Instant::now();
    // T1 (8 s): a unicast REQUEST to 10.78.0.1, answered.
    let renewed = vm.wait_for_line(
        r"DHCP lease 10\.78\.0\.\d+/24 renewed by 10\.78\.0\.1 ",
        BOOT_TIMEOUT,
    )?;
    println!(
        "{renewed}\nbound -> renewed: {:.1} s",
        bound.elapsed().as_secs_f64()
    );
    // The server moves to 10.78.0.2: renewals to .1 go unanswered; at T2 (16 s) the broadcast
    // REQUEST reaches the new server.
    net.serve_from("10.78.0.2", Some("10.78.0.1"))?;
    let moved = Instant::now();
    let rebound = vm.wait_for_line(
        r"DHCP lease 10\.78\.0\.\d+/24 renewed by 10\.78\.0\.2 ",
        BOOT_TIMEOUT,
    )?;
    println!(
        "{rebound}\nserver moved -> rebound: {:.1} s",
        moved.elapsed().as_secs_f64()
    );
    let address = |line: &str| {
        line.split("lease ")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .map(String::from)
    };
    vm.check(
        address(&lease) == address(&rebound),
        format!("a new address after rebinding: {lease} / {rebound}"),
    )?;
    vm.check(
        !vm.console_text().contains("dropped"),
        "the lease expired instead of being rebound",
    )?;
    // Power-off sends RELEASE (`[network] release_on_shutdown`) before the services stop.
    vm.powerdown()?;
    vm.wait_exit(std::time::Duration::from_secs(180))?;
    print_line(&vm, "released");
    let log = || std::fs::read_to_string(net.dir.path().join("log")).unwrap_or_default();
    let released = log()
        .lines()
        .find(|l| l.contains("DHCPRELEASE"))
        .map(String::from);
    println!(
        "dnsmasq: {}",
        released.as_deref().unwrap_or("no DHCPRELEASE")
    );
    anyhow::ensure!(
        released.is_some(),
        "no DHCPRELEASE at power-off; dnsmasq log:\n{}",
        log()
    );
    Ok(())
}

#[test]
fn network_stage_is_read_from_the_summary() {
    let line = "[ 5.1] berth-init: boot stages: kernel+initramfs 4.20 s, network 1.2 ms, \
                services 400.3 ms; ready at 4.81 s";
    assert_eq!(network_stage(line), Some("1.2 ms"));
    assert_eq!(network_stage("boot stages: mounts 1 ms"), None);
}

#[test]
fn fib_trie_and_route_parsers() {
    let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 10.0.2.0/24 2 0 2\n        |-- 10.0.2.15\n           /32 host LOCAL\n     |-- 127.0.0.1\n        /32 host LOCAL\n";
    assert_eq!(local_addresses(fib), ["10.0.2.15", "127.0.0.1"]);
    let route = "Iface\tDestination\tGateway \tFlags\n eth0\t00000000\t0202000A\t0003\n";
    assert_eq!(default_gateway(route, "eth0").as_deref(), Some("10.0.2.2"));
    assert_eq!(default_gateway(route, "eth1"), None);
}
