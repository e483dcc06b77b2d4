//! The DHCP client against a real server: Debian's dnsmasq in a network namespace, the
//! client in another, joined by a veth pair. Root only (skips visibly otherwise).
//!
//! `renew_then_rebind_then_release` drives `dhcp::Client` + `DhcpSocket` + netlink by hand
//! and checks each transition on the wire: bound, renewed by unicast to the server at T1,
//! then (the server moved to another address, so unicast goes nowhere) rebound by
//! broadcast at T2 from the new server, then RELEASE. `network_stage_gets_a_lease` runs the
//! whole network stage (`net::start` + `wait`) on the same kind of link.
//!
//! Namespaces, the veth and dnsmasq are removed by Drop guards even when a check fails.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_init::net::dhcp::{Action, Client, Destination, State};
use berth_init::net::dhcp_socket::DhcpSocket;
use berth_init::net::netlink::Netlink;

const SERVER_1: &str = "10.77.0.1";
const SERVER_2: &str = "10.77.0.2";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Skips (with a printed reason) unless root with `ip` and `dnsmasq`.
fn skip_reason() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root (network namespaces)");
    }
    if !have("dnsmasq") {
        return Some("needs dnsmasq (apt-get install dnsmasq-base; scripts/install-deps.sh)");
    }
    if !have("ip") {
        return Some("needs ip (iproute2)");
    }
    None
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn output(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces and a veth between them; everything goes away on drop.
struct Netns {
    server: String,
    client: String,
    /// Interface names: server side, client side.
    vs: String,
    vc: String,
    dir: tempfile::TempDir,
    dnsmasq: Option<Child>,
}

impl Netns {
    fn new(tag: &str) -> Self {
        let id = format!("{}{}", tag, std::process::id() % 100_000);
        let ns = Netns {
            server: format!("berth-s-{id}"),
            client: format!("berth-c-{id}"),
            vs: format!("vs{id}"),
            vc: format!("vc{id}"),
            dir: tempfile::tempdir().unwrap(),
            dnsmasq: None,
        };
        run(&["ip", "netns", "add", &ns.server]);
        run(&["ip", "netns", "add", &ns.client]);
        run(&[
            "ip", "link", "add", &ns.vs, "netns", &ns.server, "type", "veth", "peer", "name",
            &ns.vc, "netns", &ns.client,
        ]);
        run(&[
            "ip",
            "-n",
            &ns.server,
            "addr",
            "add",
            &format!("{SERVER_1}/24"),
            "dev",
            &ns.vs,
        ]);
        run(&["ip", "-n", &ns.server, "link", "set", &ns.vs, "up"]);
        ns
    }

    fn start_dnsmasq(&mut self) {
        let dir = self.dir.path();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--port=0",
            ])
            .arg("--bind-interfaces")
            .arg(format!("--interface={}", self.vs))
            .args([
                "--except-interface=lo",
                "--user=root",
                "--group=root",
                "--dhcp-authoritative",
                "--log-dhcp",
            ])
            .arg("--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,2m")
            .args([
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.53",
                "--dhcp-option=option:ntp-server,10.77.0.123",
                "--dhcp-option=option:domain-name,netns.test",
                "--dhcp-option=option:T1,6",
                "--dhcp-option=option:T2,14",
            ])
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-facility={}", dir.join("log").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn dnsmasq");
        self.dnsmasq = Some(child);
        // dnsmasq binds immediately; give it a moment to open its sockets.
        std::thread::sleep(Duration::from_millis(300));
    }

    fn stop_dnsmasq(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // `ip netns exec` execs dnsmasq, so the child is dnsmasq itself.
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Runs `f` on a thread inside the client namespace.
    fn in_client<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = PathBuf::from("/run/netns").join(&self.client);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_dnsmasq();
        // Deleting the namespaces deletes the veth pair.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.server])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.client])
            .status();
    }
}

/// What the client thread reports.
#[derive(Debug)]
enum Event {
    Sent(State, Destination, String),
    Bound {
        address: Ipv4Addr,
        server: Ipv4Addr,
        renewed: bool,
        state_before: State,
    },
}

fn link_index(nl: &mut Netlink, name: &str) -> (u32, [u8; 6]) {
    let link = nl
        .links()
        .unwrap()
        .into_iter()
        .find(|l| l.name == name)
        .expect("client veth");
    (link.index, link.mac[..6].try_into().unwrap())
}

#[test]
fn renew_then_rebind_then_release() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let started = Instant::now();
    let mut ns = Netns::new("r");
    ns.start_dnsmasq();
    let (tx, rx) = mpsc::channel::<Event>();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let vc = ns.vc.clone();
    let client = ns.in_client(move || {
        let mut nl = Netlink::open().unwrap();
        let (index, mac) = link_index(&mut nl, &vc);
        nl.link_up(index, None).unwrap();
        let mut socket = DhcpSocket::open(index, &vc).unwrap();
        let mut client = Client::new(mac, 42, Instant::now());
        let guard = Instant::now() + Duration::from_secs(90);
        loop {
            if stop_rx.try_recv().is_ok() || Instant::now() > guard {
                for action in client.release() {
                    if let Action::Send(msg, dest) = action {
                        socket.send(&msg, dest).unwrap();
                    }
                }
                return;
            }
            let deadline = client
                .deadline()
                .unwrap()
                .min(Instant::now() + Duration::from_millis(200));
            let before = client.state();
            let actions = match socket.recv(deadline).unwrap() {
                Some(msg) => client.on_packet(&msg, Instant::now()),
                None if Instant::now() >= client.deadline().unwrap() => {
                    client.on_timeout(Instant::now())
                }
                None => continue,
            };
            for action in actions {
                match action {
                    Action::Send(msg, dest) => {
                        let kind = format!("{:?}", msg.opts().msg_type());
                        // Unicast to a vanished server may fail to route: that is the point.
                        let _ = socket.send(&msg, dest);
                        let _ = tx.send(Event::Sent(client.state(), dest, kind));
                    }
                    Action::Configure { lease, renewed } => {
                        nl.add_address(index, IpAddr::V4(lease.address), lease.prefix)
                            .unwrap();
                        socket.set_address(Some(lease.address)).unwrap();
                        let _ = tx.send(Event::Bound {
                            address: lease.address,
                            server: lease.server,
                            renewed,
                            state_before: before,
                        });
                    }
                    Action::Deconfigure(lease) => {
                        let _ = nl.del_address(index, IpAddr::V4(lease.address), lease.prefix);
                    }
                }
            }
        }
    });
    let next_bound =
        |rx: &mpsc::Receiver<Event>, sent: &mut Vec<(State, Destination, String)>| -> Event {
            let guard = Instant::now() + Duration::from_secs(40);
            loop {
                let left = guard.saturating_duration_since(Instant::now());
                match rx
                    .recv_timeout(left)
                    .expect("hang guard: no lease event within 40 s")
                {
                    Event::Sent(s, d, k) => sent.push((s, d, k)),
                    bound => return bound,
                }
            }
        };
    let mut sent = Vec::new();
    // 1. Bound.
    let first = next_bound(&rx, &mut sent);
    let Event::Bound {
        address,
        server,
        renewed: false,
        state_before: State::Requesting,
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!(server, SERVER_1.parse::<Ipv4Addr>().unwrap());
    assert!(
        (50..=60).contains(&address.octets()[3]) && address.octets()[..3] == [10, 77, 0],
        "{address}"
    );
    println!(
        "bound {address} from {server} after {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let shown = output(&[
        "ip", "-n", &ns.client, "-4", "-o", "addr", "show", "dev", &ns.vc,
    ]);
    assert!(shown.contains(&format!("{address}/24")), "{shown}");
    // 2. Renewed at T1 by unicast to the server.
    sent.clear();
    let second = next_bound(&rx, &mut sent);
    let Event::Bound {
        renewed: true,
        server,
        state_before: State::Renewing,
        ..
    } = second
    else {
        panic!("{second:?} after {sent:?}")
    };
    assert_eq!(server, SERVER_1.parse::<Ipv4Addr>().unwrap());
    assert!(
        sent.iter()
            .all(|(_, d, _)| *d == Destination::Unicast(server)),
        "{sent:?}"
    );
    println!(
        "renewed by unicast after {:.2}s",
        started.elapsed().as_secs_f64()
    );
    // 3. The server moves: unicast renewals go unanswered, the broadcast at T2 reaches it.
    ns.stop_dnsmasq();
    run(&[
        "ip",
        "-n",
        &ns.server,
        "addr",
        "del",
        &format!("{SERVER_1}/24"),
        "dev",
        &ns.vs,
    ]);
    run(&[
        "ip",
        "-n",
        &ns.server,
        "addr",
        "add",
        &format!("{SERVER_2}/24"),
        "dev",
        &ns.vs,
    ]);
    ns.start_dnsmasq();
    sent.clear();
    let third = next_bound(&rx, &mut sent);
    let Event::Bound {
        renewed: true,
        server,
        state_before: State::Rebinding,
        address: again,
    } = third
    else {
        panic!("{third:?} after {sent:?}")
    };
    assert_eq!(server, SERVER_2.parse::<Ipv4Addr>().unwrap());
    assert_eq!(again, address, "the same address after rebinding");
    assert!(
        sent.iter().any(|(s, d, _)| *s == State::Renewing
            && *d == Destination::Unicast(SERVER_1.parse().unwrap())),
        "{sent:?}"
    );
    assert!(
        sent.iter()
            .any(|(s, d, _)| *s == State::Rebinding && *d == Destination::Broadcast),
        "{sent:?}"
    );
    println!(
        "rebound by broadcast to {server} after {:.2}s",
        started.elapsed().as_secs_f64()
    );
    // 4. RELEASE reaches the server.
    stop_tx.send(()).unwrap();
    client.join().unwrap();
    let guard = Instant::now() + Duration::from_secs(5);
    while !ns.log().contains("DHCPRELEASE") && Instant::now() < guard {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        ns.log().contains("DHCPRELEASE"),
        "dnsmasq log:\n{}",
        ns.log()
    );
    println!("released; total {:.2}s", started.elapsed().as_secs_f64());
}

#[test]
fn network_stage_gets_a_lease() {
    if let Some(reason) = skip_reason() {
        eprintln!("skipped: {reason}");
        return;
    }
    let started = Instant::now();
    let mut ns = Netns::new("s");
    ns.start_dnsmasq();
    let resolv = ns.dir.path().join("resolv.conf");
    let sysfs = ns.dir.path().join("sys");
    let vc = ns.vc.clone();
    let env = berth_init::net::Env {
        resolv_conf: resolv.clone(),
        set_hostname: false,
        modules: sysfs.join("no-modules"),
        sysfs,
    };
    let client_ns = ns.client.clone();
    let handle = ns.in_client(move || {
        let config = berth_init::net::NetworkConfig {
            wait_secs: 30,
            ..Default::default()
        };
        let (plan, errors) = berth_init::net::config::plan(&config, None, &Default::default());
        assert!(errors.is_empty());
        let network = berth_init::net::start(plan, env, berth_init::console::Console::default());
        network.wait();
        let interfaces = network.interfaces();
        let ntp = network.ntp_servers();
        let routes = output(&["ip", "-n", &client_ns, "-4", "route", "show", "default"]);
        network.release(Duration::from_secs(5));
        // RELEASE removed the address (and with it the route through it).
        let after = output(&["ip", "-n", &client_ns, "-4", "-o", "addr", "show"]);
        (interfaces, ntp, routes, after)
    });
    let (interfaces, ntp, routes, after) = handle.join().unwrap();
    println!(
        "network stage ready after {:.2}s",
        started.elapsed().as_secs_f64()
    );
    let status = interfaces.get(&vc).expect("the veth is configured");
    assert!(status.ready, "{status:?}");
    assert!(
        matches!(status.addresses[..], [(IpAddr::V4(a), 24)] if a.octets()[..3] == [10, 77, 0]),
        "{status:?}"
    );
    assert_eq!(ntp, [Ipv4Addr::new(10, 77, 0, 123)]);
    let text = std::fs::read_to_string(&resolv).unwrap();
    assert!(
        text.contains("nameserver 10.77.0.53\n") && text.contains("search netns.test\n"),
        "{text}"
    );
    assert!(routes.contains("default via 10.77.0.1"), "{routes}");
    assert!(
        !after.contains("10.77.0."),
        "address left after RELEASE: {after}"
    );
    wait_for_log(&ns, "DHCPRELEASE");
}

fn wait_for_log(ns: &Netns, what: &str) {
    let guard = Instant::now() + Duration::from_secs(5);
    while !ns.log().contains(what) && Instant::now() < guard {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ns.log().contains(what), "dnsmasq log:\n{}", ns.log());
}
