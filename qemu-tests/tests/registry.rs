//! An air-gapped node pulling through its mirror, in one boot.
//!
//! A real `docker-registry` runs on the host's loopback with the image
//! `library/edge-app:v1` (busybox from Debian's `busybox-static`, built with umoci, pushed with
//! skopeo). The guest's only network is QEMU's user network with `restrict=on`: it can reach
//! nothing outside, except the one `guestfwd` rule that joins `10.0.2.2:5000` to the registry
//! (`cmd:busybox nc`, one relay per connection, so parallel layer downloads work; QEMU refuses
//! a `guestfwd` on its own host address, so the virtual host moves to `10.0.2.254` and
//! `10.0.2.2` is the mirror's address only). Every frame on the guest's NIC is recorded with
//! QEMU's `filter-dump`.
//!
//! The image is configured as an operator building an air-gapped image would: a variant whose
//! `certs.d/_default/hosts.toml` is mirror-only (`server = "http://10.0.2.2:5000"`). The guest
//! pulls `docker.io/library/edge-app:v1`, lists it and runs it. Then:
//! - the registry's log shows only requests with `Host: 10.0.2.2:5000`, and every API request
//!   carries `?ns=docker.io` (the access log is quoted);
//! - the recorded frames hold no DNS query for a `docker.io` name (the guest's resolver was
//!   never asked for the upstream registry), although the guest has a name server configured
//!   (static `ip=` with `10.0.2.3`; a restricted network's DHCP offers none) and the frames
//!   do hold the query of a positive control (the test agent resolving a name, which the
//!   restricted network drops); every TCP connection the guest opened went to `10.0.2.2:5000`.
//!
//! The preloaded-image half of the issue's QEMU item (a second image present at first boot
//! with no network) is `tests/content.rs`.
//!
//! Needs root-free host tools (`docker-registry`, `umoci`, `skopeo`, `/bin/busybox`), the
//! static build and the test image (`make static image-test`); run alone:
//! `cargo test -p berth-qemu-tests --test registry -- --test-threads=1 --nocapture`.

use berth_test_support::registry;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_qemu_tests::image::VariantBuilder;
use berth_qemu_tests::vm::BOOT_TIMEOUT;
use berth_qemu_tests::Vm;
use registry::{busybox_layout, push_layout, start_registry_logged, RegistryConfig};

const READY: &str = r"berth-init: berth ready";
/// What the guest pulls: a Docker Hub name, which only the mirror may serve.
const REFERENCE: &str = "docker.io/library/edge-app:v1";
/// The mirror as the guest sees it.
const MIRROR: &str = "10.0.2.2:5000";
/// The air-gap configuration baked into the image.
const HOSTS_TOML: &str = "# Air-gapped: every registry through the local mirror only.\n\
                          server = \"http://10.0.2.2:5000\"\n";
/// The guest's name server (QEMU's usual one; the restricted network drops what is sent to it).
const NAMESERVER: &str = "10.0.2.3";
/// A name only the positive control asks for.
const CONTROL_NAME: &str = "dns-control.berth.test";
/// Hang guard for one berthctl call (a pull at TCG speed).
const CTL_TIMEOUT: Duration = Duration::from_secs(180);

/// What the guest put on the wire, from a classic pcap file of Ethernet frames.
#[derive(Debug, Default)]
struct Wire {
    frames: usize,
    /// Names asked in DNS queries (UDP or TCP to port 53), lower case.
    dns_queries: BTreeSet<String>,
    /// `address:port` of every TCP SYN (without ACK) the guest sent.
    tcp_connects: BTreeSet<String>,
    /// Every IPv4 destination the guest sent to, with protocol and port.
    destinations: BTreeSet<String>,
}

/// Reads the pcap that QEMU's `filter-dump` writes. By hand: no packet or pcap crate is a
/// dependency of the workspace, and the classic pcap record, Ethernet, IPv4, UDP, TCP and DNS
/// question layouts needed here are fixed and short.
fn read_pcap(path: &Path, guest_mac: [u8; 6]) -> Result<Wire> {
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    ensure!(
        data.len() >= 24 && data[..4] == [0xd4, 0xc3, 0xb2, 0xa1],
        "{}: not a little-endian classic pcap file",
        path.display()
    );
    let mut wire = Wire::default();
    let mut at = 24;
    while at + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[at + 8..at + 12].try_into()?) as usize;
        let Some(frame) = data.get(at + 16..at + 16 + caplen) else {
            break;
        };
        at += 16 + caplen;
        wire.frames += 1;
        // From the guest, IPv4 only (ARP and IPv6 carry no registry traffic here).
        if frame.len() < 34 || frame[6..12] != guest_mac || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let proto = ip[9];
        let dst = format!("{}.{}.{}.{}", ip[16], ip[17], ip[18], ip[19]);
        let Some(l4) = ip.get(ihl..) else { continue };
        if l4.len() < 4 {
            continue;
        }
        let dport = u16::from_be_bytes([l4[2], l4[3]]);
        match proto {
            17 => {
                wire.destinations.insert(format!("udp {dst}:{dport}"));
                if dport == 53 {
                    if let Some(name) = l4.get(8..).and_then(dns_question) {
                        wire.dns_queries.insert(name);
                    }
                }
            }
            6 if l4.len() >= 20 => {
                wire.destinations.insert(format!("tcp {dst}:{dport}"));
                let flags = l4[13];
                if flags & 0x02 != 0 && flags & 0x10 == 0 {
                    wire.tcp_connects.insert(format!("{dst}:{dport}"));
                }
                let off = usize::from(l4[12] >> 4) * 4;
                // DNS over TCP: a 2-byte length, then the message.
                if dport == 53 {
                    if let Some(name) = l4.get(off + 2..).and_then(dns_question) {
                        wire.dns_queries.insert(name);
                    }
                }
            }
            other => {
                wire.destinations.insert(format!("proto {other} {dst}"));
            }
        }
    }
    Ok(wire)
}

/// The first question's name of a DNS message.
fn dns_question(msg: &[u8]) -> Option<String> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(at)?);
        if len == 0 {
            break;
        }
        if len >= 64 {
            return None;
        }
        labels.push(String::from_utf8_lossy(msg.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
    Some(labels.join("."))
}

/// `key="value"` or `key=value` of a logrus text line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split(' ').next()
    }
}

#[test]
fn air_gapped_pull_through_a_default_mirror_only_config() -> Result<()> {
    let missing: Vec<&str> = ["docker-registry", "umoci", "skopeo"]
        .into_iter()
        .filter(|t| {
            !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .any(|d| d.join(t).is_file())
        })
        .collect();
    if !missing.is_empty() || !Path::new("/bin/busybox").is_file() {
        bail!(
            "missing host tools {missing:?} or /bin/busybox: run scripts/install-deps.sh \
             (docker-registry, umoci, skopeo, busybox-static)"
        );
    }
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("berth-qemu-registry")
        .tempdir()?;
    let layout = busybox_layout(tmp.path())?;
    let registry = start_registry_logged(&tmp.path().join("registry"), RegistryConfig::default())?;
    push_layout(
        &layout,
        "v1",
        &format!("{}/library/edge-app:v1", registry.addr),
        None,
        None,
    )?;
    // Only what the guest asks from here on.
    let log_from = std::fs::metadata(&registry.log)?.len() as usize;
    let access_from = std::fs::metadata(&registry.access_log)?.len() as usize;
    println!(
        "registry on {} with {REFERENCE} pushed as library/edge-app:v1",
        registry.addr
    );

    let variant = VariantBuilder::new()?
        .edit("certs.d/_default/hosts.toml", |_| HOSTS_TOML.to_string())?
        .build()?;
    let port = registry.addr.rsplit(':').next().unwrap_or_default();
    let netdev = format!(
        "user,id=n0,net=10.0.2.0/24,host=10.0.2.254,restrict=on,\
         guestfwd=tcp:{MIRROR}-cmd:/bin/busybox nc 127.0.0.1 {port}"
    );
    let mac = [0x52, 0x54, 0x00, 0x12, 0x70, 0x05];
    let mac_text = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let pcap = tmp.path().join("guest.pcap");
    // A restricted user network's DHCP offers no name server, and a node with no resolver
    // could not ask one anything: configure the node statically (nfsroot `ip=`) with a name
    // server, 10.0.2.3. Queries to it are dropped by the restricted network, and recorded.
    let mut vm = Vm::builder("registry")
        .image(&variant.image)
        .nic(&netdev, &mac_text)
        .append(&format!(
            "ip=10.0.2.15::10.0.2.254:255.255.255.0:edge-node:eth0:off:{NAMESERVER}::"
        ))
        .args([
            "-object".to_string(),
            format!("filter-dump,id=dump0,netdev=n0,file={}", pcap.display()),
        ])
        .spawn()?;
    let address = vm.wait_for_line(r"network: eth0: static 10\.0\.2\.15/24", BOOT_TIMEOUT)?;
    vm.wait_for_line(READY, BOOT_TIMEOUT)?;
    println!("{}", address.trim());
    let resolv = String::from_utf8(vm.agent()?.read_file("/etc/resolv.conf")?)?;
    println!("guest /etc/resolv.conf:\n{resolv}");
    vm.check(
        resolv.contains(&format!("nameserver {NAMESERVER}")),
        "the guest has no name server configured",
    )?;

    let resolve = vm.berthctl_ok(&["hosts", "resolve", REFERENCE], CTL_TIMEOUT)?;
    println!("berthctl hosts resolve {REFERENCE}:\n{}", resolve.stdout);
    let endpoints: Vec<&str> = resolve
        .stdout
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|c| c.parse::<u32>().is_ok())
        })
        .collect();
    vm.check(
        endpoints.len() == 1 && endpoints[0].contains("http://10.0.2.2:5000/v2"),
        format!("expected the mirror as the only endpoint: {endpoints:?}"),
    )?;

    let pull = vm.berthctl_ok(&["images", "pull", REFERENCE], CTL_TIMEOUT)?;
    println!(
        "berthctl images pull {REFERENCE} ({:.1} s):\n{}",
        pull.elapsed.as_secs_f64(),
        pull.stdout
    );
    let ls = vm.berthctl_ok(&["images", "ls"], CTL_TIMEOUT)?;
    println!("berthctl images ls:\n{}", ls.stdout);
    vm.check(
        ls.stdout.lines().any(|l| l.starts_with(REFERENCE)),
        format!("{REFERENCE} not in images ls"),
    )?;

    let mut agent = vm.agent()?;
    let ran = agent.run_with(
        &[
            "/usr/bin/berthctl",
            "run",
            "--rm",
            REFERENCE,
            "/bin/echo",
            "hello from the mirror",
        ],
        None,
        CTL_TIMEOUT,
    )?;
    println!(
        "berthctl run --rm {REFERENCE} /bin/echo …: exit {}, stdout {:?}, stderr {:?}",
        ran.status, ran.stdout, ran.stderr
    );
    vm.check(
        ran.status == 0 && ran.stdout == "hello from the mirror\n",
        "the pulled image did not run",
    )?;

    // Positive control: a query the guest does send reaches the recording (and nowhere else:
    // the restricted network drops it, so the agent gets no answer).
    let control = agent.resolve(CONTROL_NAME);
    println!("agent resolve {CONTROL_NAME}: {control:?}");
    vm.check(
        control.is_err(),
        "the restricted network answered a DNS query",
    )?;

    // The registry saw the guest's requests, all for the mirror's own name, all with ?ns=.
    let log = std::fs::read_to_string(&registry.log)?;
    let access = std::fs::read_to_string(&registry.access_log)?;
    let access = &access[access_from..];
    println!("registry access log (the guest's requests):\n{access}");
    let requests: Vec<(&str, &str)> = log[log_from..]
        .lines()
        .filter(|l| l.contains("msg=\"response completed\""))
        .map(|l| {
            (
                field(l, "http.request.host").unwrap_or(""),
                field(l, "http.request.uri").unwrap_or(""),
            )
        })
        .collect();
    let hosts: BTreeSet<&str> = requests.iter().map(|(h, _)| *h).collect();
    println!(
        "registry: {} requests, Host headers {hosts:?}",
        requests.len()
    );
    vm.check(
        hosts == BTreeSet::from([MIRROR]),
        format!("requests for other hosts than {MIRROR}: {hosts:?}"),
    )?;
    let without_ns: Vec<&str> = requests
        .iter()
        .map(|(_, u)| *u)
        .filter(|u| u.starts_with("/v2/") && u.len() > 4 && !u.contains("ns=docker.io"))
        .collect();
    vm.check(
        without_ns.is_empty(),
        format!("API requests without ?ns=docker.io: {without_ns:?}"),
    )?;
    for what in [
        "/v2/library/edge-app/manifests/v1",
        "/v2/library/edge-app/blobs/sha256:",
    ] {
        vm.check(
            requests.iter().any(|(_, u)| u.starts_with(what)),
            format!("no request for {what}…"),
        )?;
    }

    // The wire: no DNS question about docker.io, the control's question present, and no TCP
    // connection anywhere but the mirror.
    let wire = read_pcap(&pcap, mac)?;
    println!(
        "guest NIC: {} frames; DNS questions {:?}; TCP connections to {:?}; destinations {:?}",
        wire.frames, wire.dns_queries, wire.tcp_connects, wire.destinations
    );
    vm.check(
        wire.dns_queries.contains(CONTROL_NAME),
        format!(
            "the recording missed the control query: {:?}",
            wire.dns_queries
        ),
    )?;
    let upstream: Vec<&String> = wire
        .dns_queries
        .iter()
        .filter(|q| q.ends_with("docker.io") || q.contains("docker"))
        .collect();
    vm.check(
        upstream.is_empty(),
        format!("the guest asked its resolver for {upstream:?}"),
    )?;
    vm.check(
        !wire.tcp_connects.is_empty() && wire.tcp_connects.iter().all(|c| c == MIRROR),
        format!("TCP connections: {:?}", wire.tcp_connects),
    )?;
    println!(
        "air-gapped pull scenario (registry, image variant, boot, pull, run): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
