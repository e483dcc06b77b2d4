//! Networking: `lo`, then every other interface by the `[network]` rules (DHCPv4 or static
//! addresses, routes, MTU), DNS in `/run/berth/resolv.conf`, and the host name.
//!
//! [`start`] configures the interfaces present and keeps a thread on the kernel's link
//! notifications (`RTM_NEWLINK`), so an interface that appears later — a hot-plugged
//! virtio-net, or one whose driver loads after we start — is configured by the same rules.
//! Each DHCP interface has its own thread running [`dhcp::Client`]. [`Network::wait`] is
//! the boot ordering point: stage 2 calls it before starting berthd; it returns when every
//! expected interface is configured or `[network] wait_secs` passed.
//!
//! See `docs/networking.md` for the keys and the console lines.

pub mod config;
pub mod dhcp;
pub mod dhcp_socket;
pub mod link;
pub mod netlink;
pub mod pci;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use netlink_packet_route::route::RouteProtocol;

use crate::console::Console;
use config::{InterfacePlan, Plan};
use dhcp::{Action, Client, Lease};
use dhcp_socket::DhcpSocket;
use netlink::{Link, LinkEvents, Netlink};

pub use config::NetworkConfig;
pub use link::{interface_up, NetError};

/// DHCP default routes get this metric plus the interface index: static routes (metric 0)
/// win, and the first interface's DHCP route wins over later ones.
pub const DHCP_METRIC_BASE: u32 = 1024;

/// Where init writes the resolver configuration (`/etc/resolv.conf` links to it).
pub const RESOLV_CONF: &str = "/run/berth/resolv.conf";

/// Where the running system is: paths and switches that tests change.
#[derive(Debug, Clone)]
pub struct Env {
    /// The resolv.conf to write.
    pub resolv_conf: PathBuf,
    /// Set the kernel host name (off in host tests).
    pub set_hostname: bool,
    /// Count PCI network devices under this sysfs root to know what to wait for.
    pub sysfs: PathBuf,
    /// The kernel's module directory, whose `modules.alias` says which PCI network devices
    /// a module of the image can drive (see [`pci`]).
    pub modules: PathBuf,
}

impl Default for Env {
    fn default() -> Self {
        Self {
            resolv_conf: PathBuf::from(RESOLV_CONF),
            set_hostname: true,
            sysfs: PathBuf::from("/sys"),
            modules: crate::modules::release_dir(Path::new("/")),
        }
    }
}

/// What one interface ended up with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStatus {
    /// Addresses configured (static or leased).
    pub addresses: Vec<(IpAddr, u8)>,
    /// Name servers.
    pub dns: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
    /// NTP servers.
    pub ntp: Vec<Ipv4Addr>,
    /// DHCP host name.
    pub dhcp_hostname: Option<String>,
    /// Configured (static applied, or a lease bound).
    pub ready: bool,
}

#[derive(Debug, Default)]
struct Status {
    /// Interfaces by name.
    interfaces: BTreeMap<String, InterfaceStatus>,
    /// Link indexes already handled.
    seen: BTreeSet<u32>,
    /// Which plan entries matched something.
    matched: BTreeSet<usize>,
    /// The host name set, and from what.
    hostname: Option<(String, &'static str)>,
    /// MAC of the first non-loopback interface (for the fallback host name).
    first_mac: Option<String>,
    /// DHCP clients to release at shutdown: (interface, sender of the stop request).
    stops: Vec<std::sync::mpsc::Sender<()>>,
    /// DHCP client threads running.
    clients: usize,
}

struct Shared {
    plan: Plan,
    env: Env,
    console: Console,
    status: Mutex<Status>,
    changed: Condvar,
}

/// The running network stage.
#[derive(Clone)]
pub struct Network {
    shared: Arc<Shared>,
}

/// The network stage as stage 2 runs it: validates `config` and the kernel's `ip=`
/// (from `cmdline`; the configuration `files` are read again for line numbers), reports each
/// problem as one error line, and starts networking. Call [`Network::wait`] next.
pub fn stage(config: &NetworkConfig, files: &[&Path], cmdline: &str, console: Console) -> Network {
    let sources = config::Sources::load(files, cmdline);
    // The last ip= wins, as in the kernel.
    let ip_config = crate::cmdline::split(cmdline)
        .into_iter()
        .rev()
        .find(|a| a.key == "ip")
        .and_then(
            |arg| match crate::ipconfig::parse(arg.value.as_deref().unwrap_or_default()) {
                Ok(ipc) => Some(ipc),
                Err(err) => {
                    console.error(&format!("kernel command line: {}: {err}; ignored", arg.raw));
                    None
                }
            },
        );
    let (plan, errors) = config::plan(config, ip_config.as_ref(), &sources);
    for line in errors {
        console.error(&line);
    }
    start(plan, Env::default(), console)
}

/// Brings `lo` up, validates the configuration (reporting each problem as one line),
/// configures the interfaces present and watches for new ones. Never fails: problems are
/// reported and the node goes on.
pub fn start(plan: Plan, env: Env, console: Console) -> Network {
    if let Err(err) = interface_up("lo") {
        console.warn(&format!("cannot bring lo up: {err}"));
    }
    let shared = Arc::new(Shared {
        plan,
        env,
        console,
        status: Mutex::new(Status::default()),
        changed: Condvar::new(),
    });
    let network = Network {
        shared: shared.clone(),
    };
    if let Some(name) = &shared.plan.hostname {
        network.set_hostname(name, "configuration");
    } else if let Some(name) = &shared.plan.ip_hostname {
        network.set_hostname(name, "ip=");
    }
    // Subscribe before listing so a link that appears in between is not missed.
    let events = LinkEvents::open();
    match Netlink::open().and_then(|mut nl| nl.links()) {
        Ok(mut links) => {
            links.sort_by_key(|l| l.index);
            for link in links {
                network.add_link(link);
            }
        }
        Err(err) => console.error(&format!("network: cannot list interfaces: {err}")),
    }
    match events {
        Ok(mut events) => {
            let watcher = network.clone();
            let spawned =
                std::thread::Builder::new()
                    .name("net-links".into())
                    .spawn(move || loop {
                        match events.wait_links() {
                            Ok(links) => links.into_iter().for_each(|l| watcher.add_link(l)),
                            Err(err) => {
                                watcher
                                    .shared
                                    .console
                                    .warn(&format!("network: link notifications stopped: {err}"));
                                return;
                            }
                        }
                    });
            if let Err(err) = spawned {
                console.warn(&format!("network: cannot watch for new interfaces: {err}"));
            }
        }
        Err(err) => console.warn(&format!("network: cannot watch for new interfaces: {err}")),
    }
    network
}

impl Network {
    /// Waits until every expected interface is configured, or the `wait_secs` settle time.
    /// Expected: the PCI network devices in sysfs that a driver can bind (bound already, or
    /// claimed by a module of the image, which may still be loading; the others are named in
    /// one line and not waited for, see [`pci`]) and the interfaces already seen. Then warns
    /// about `[[network.interface]]` entries that matched nothing and interfaces still
    /// unconfigured, and sets the fallback host name.
    pub fn wait(&self) {
        let started = Instant::now();
        let expected = self.expected_nics();
        let deadline = started + self.shared.plan.wait;
        let mut status = self.shared.status.lock().expect("network status");
        loop {
            let present = status.interfaces.len();
            let done = present >= expected && status.interfaces.values().all(|i| i.ready);
            let now = Instant::now();
            if done || now >= deadline {
                break;
            }
            status = self
                .shared
                .changed
                .wait_timeout(status, deadline - now)
                .expect("network status")
                .0;
        }
        for (i, entry) in self.shared.plan.interfaces.iter().enumerate() {
            if !status.matched.contains(&i) {
                self.shared.console.warn(&format!(
                    "network: interface {:?} matches no interface; not applied",
                    entry.label
                ));
            }
        }
        if status.interfaces.len() < expected {
            self.shared.console.warn(&format!(
                "network: {expected} PCI network device(s) but {} interface(s) after {:.1}s (driver not loaded?)",
                status.interfaces.len(),
                started.elapsed().as_secs_f64()
            ));
        }
        for (name, iface) in &status.interfaces {
            if !iface.ready {
                self.shared.console.warn(&format!(
                    "network: {name}: not configured after {:.1}s; continuing (DHCP keeps trying)",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        if status.hostname.is_none() {
            let name = status
                .first_mac
                .as_ref()
                .map(|m| format!("berth-{m}"))
                .unwrap_or_else(|| "berth".into());
            drop(status);
            self.set_hostname(&name, "fallback");
        }
    }

    /// How many PCI network devices can get an interface; says once which cannot.
    fn expected_nics(&self) -> usize {
        let nics = pci::network_devices(&self.shared.env.sysfs);
        if nics.iter().all(|n| n.bound) {
            return nics.len();
        }
        let aliases = crate::coldplug::AliasTable::read(&self.shared.env.modules);
        let (drivable, orphans) =
            pci::split_drivable(nics, |modalias| !aliases.lookup(modalias).is_empty());
        if let Some(line) = pci::orphans_line(&orphans) {
            self.shared.console.warn(&line);
        }
        drivable.len()
    }

    /// NTP servers learned so far (`ip=` ntp0, DHCP option 42), without duplicates.
    pub fn ntp_servers(&self) -> Vec<Ipv4Addr> {
        let status = self.shared.status.lock().expect("network status");
        let mut out: Vec<Ipv4Addr> = Vec::new();
        for a in status.interfaces.values().flat_map(|i| i.ntp.iter()) {
            if !out.contains(a) {
                out.push(*a);
            }
        }
        out
    }

    /// What each interface has, by name.
    pub fn interfaces(&self) -> BTreeMap<String, InterfaceStatus> {
        self.shared
            .status
            .lock()
            .expect("network status")
            .interfaces
            .clone()
    }

    /// Releases every DHCP lease (shutdown): each client sends RELEASE and removes its
    /// address. Waits up to `timeout` for them to finish.
    pub fn release(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut status = self.shared.status.lock().expect("network status");
        for stop in std::mem::take(&mut status.stops) {
            let _ = stop.send(());
        }
        while status.clients > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            status = self
                .shared
                .changed
                .wait_timeout(status, deadline - now)
                .expect("network status")
                .0;
        }
    }

    /// Whether `[network] release_on_shutdown` asks for [`Network::release`] at shutdown.
    pub fn release_on_shutdown(&self) -> bool {
        self.shared.plan.release_on_shutdown
    }

    fn add_link(&self, link: Link) {
        if link.loopback || link.name.is_empty() {
            return;
        }
        let first = {
            let mut status = self.shared.status.lock().expect("network status");
            if !status.seen.insert(link.index) {
                return;
            }
            let first = status.first_mac.is_none() && link.mac.len() == 6;
            if first {
                status.first_mac = Some(link.mac_string().replace(':', ""));
            }
            first
        };
        let plan = self.shared.plan.for_interface(&link.name, &link.mac, first);
        // The DHCP default is for Ethernet-like NICs, not tunnels or other MAC-less links.
        let plan = plan.filter(|(index, _)| *index != usize::MAX || link.mac.len() == 6);
        let Some((index, plan)) = plan else {
            self.shared.console.info(&format!(
                "network: {}: no configuration matches; left down",
                link.name
            ));
            return;
        };
        {
            let mut status = self.shared.status.lock().expect("network status");
            status.matched.insert(index);
            status
                .interfaces
                .insert(link.name.clone(), InterfaceStatus::default());
        }
        if let Err(err) = self.configure_static(&link, &plan) {
            self.shared
                .console
                .error(&format!("network: {}: {err}", link.name));
        }
        if plan.dhcp {
            let (tx, rx) = std::sync::mpsc::channel();
            self.shared
                .status
                .lock()
                .expect("network status")
                .stops
                .push(tx);
            let me = self.clone();
            let name = link.name.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("dhcp-{}", link.name))
                .spawn(move || me.run_dhcp(&link, &plan, &rx));
            if let Err(err) = spawned {
                self.shared.console.error(&format!(
                    "network: {name}: cannot start the DHCP client: {err}"
                ));
            }
        } else {
            self.update(&link.name, |s| s.ready = true);
        }
    }

    fn configure_static(
        &self,
        link: &Link,
        plan: &InterfacePlan,
    ) -> Result<(), netlink::NetlinkError> {
        let mut nl = Netlink::open()?;
        nl.link_up(link.index, plan.mtu)?;
        for (addr, prefix) in &plan.addresses {
            nl.add_address(link.index, *addr, *prefix)?;
        }
        for route in &plan.routes {
            nl.add_route(
                link.index,
                route.to,
                route.prefix,
                route.via,
                RouteProtocol::Static,
                0,
            )?;
        }
        let (dns, search, ntp) = (plan.dns.clone(), plan.search.clone(), plan.ntp.clone());
        let addresses = plan.addresses.clone();
        self.update(&link.name, move |s| {
            s.addresses = addresses;
            s.dns = dns;
            s.search = search;
            s.ntp = ntp;
        });
        if !plan.addresses.is_empty() {
            let list: Vec<String> = plan
                .addresses
                .iter()
                .map(|(a, p)| format!("{a}/{p}"))
                .collect();
            let gw = plan
                .routes
                .iter()
                .find(|r| r.prefix == 0)
                .and_then(|r| r.via);
            let gw = gw.map(|g| format!(", gateway {g}")).unwrap_or_default();
            self.shared.console.info(&format!(
                "network: {}: static {}{gw} ({})",
                link.name,
                list.join(" "),
                plan.label
            ));
        }
        Ok(())
    }

    /// The DHCP client loop of one interface; returns after a RELEASE.
    fn run_dhcp(&self, link: &Link, plan: &InterfacePlan, stop: &std::sync::mpsc::Receiver<()>) {
        /// Counts the client in [`Status::clients`] while it runs, for [`Network::release`].
        struct Running<'a>(&'a Shared);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.status.lock().expect("network status").clients -= 1;
                self.0.changed.notify_all();
            }
        }
        self.shared.status.lock().expect("network status").clients += 1;
        let _running = Running(&self.shared);
        let console = self.shared.console;
        let name = &link.name;
        let mut socket = match DhcpSocket::open(link.index, name) {
            Ok(s) => s,
            Err(err) => return console.error(&format!("network: {name}: DHCP: {err}")),
        };
        let mut nl = match Netlink::open() {
            Ok(nl) => nl,
            Err(err) => return console.error(&format!("network: {name}: DHCP: {err}")),
        };
        let mac: [u8; 6] = link
            .mac
            .get(..6)
            .and_then(|m| m.try_into().ok())
            .unwrap_or_default();
        let seed = crate::console::uptime().as_nanos() as u64 ^ u64::from(link.index);
        let hostname = self
            .shared
            .plan
            .hostname
            .clone()
            .or(self.shared.plan.ip_hostname.clone());
        let mut client = Client::new(mac, seed, Instant::now()).with_hostname(hostname);
        if let Some(id) = &plan.client_id {
            client = client.with_client_id(id.clone());
        }
        let mut send_errors = 0u32;
        console.debug(&format!("network: {name}: DHCP client started"));
        loop {
            if stop.try_recv().is_ok() {
                let actions = client.release();
                self.apply(
                    &mut nl,
                    &mut socket,
                    link,
                    plan,
                    actions,
                    &mut send_errors,
                    true,
                );
                return;
            }
            let Some(deadline) = client.deadline() else {
                return;
            };
            // Wake at least once a second to notice a stop request.
            let wake = deadline.min(Instant::now() + Duration::from_secs(1));
            let actions = match socket.recv(wake) {
                Ok(Some(msg)) => client.on_packet(&msg, Instant::now()),
                Ok(None) if Instant::now() >= deadline => client.on_timeout(Instant::now()),
                Ok(None) => continue,
                Err(err) => {
                    // A hot-unplugged NIC: stop, and forget it so a new one is configured.
                    if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
                        console.info(&format!(
                            "network: {name}: interface removed; DHCP client stopped"
                        ));
                        let mut status = self.shared.status.lock().expect("network status");
                        status.interfaces.remove(name);
                        status.seen.remove(&link.index);
                        return;
                    }
                    console.warn(&format!("network: {name}: DHCP: {err}"));
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            self.apply(
                &mut nl,
                &mut socket,
                link,
                plan,
                actions,
                &mut send_errors,
                false,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        nl: &mut Netlink,
        socket: &mut DhcpSocket,
        link: &Link,
        plan: &InterfacePlan,
        actions: Vec<Action>,
        send_errors: &mut u32,
        releasing: bool,
    ) {
        let console = self.shared.console;
        let name = &link.name;
        for action in actions {
            match action {
                Action::Send(msg, dest) => match socket.send(&msg, dest) {
                    Ok(()) => {
                        *send_errors = 0;
                        if console.level() >= crate::console::Level::Debug {
                            let kind = msg.opts().msg_type();
                            console
                                .debug(&format!("network: {name}: DHCP {kind:?} sent ({dest:?})"));
                        }
                    }
                    Err(err) => {
                        // One line per run of failures, not one per retransmission.
                        if *send_errors == 0 {
                            console.warn(&format!("network: {name}: DHCP send failed: {err}"));
                        }
                        *send_errors += 1;
                    }
                },
                Action::Configure { lease, renewed } => {
                    if let Err(err) = configure_lease(nl, link.index, plan, &lease, renewed) {
                        console.error(&format!(
                            "network: {name}: cannot apply the DHCP lease: {err}"
                        ));
                        continue;
                    }
                    if let Err(err) = socket.set_address(Some(lease.address)) {
                        console.warn(&format!("network: {name}: DHCP unicast socket: {err}"));
                    }
                    if renewed {
                        console.info(&format!(
                            "network: {name}: DHCP lease {}/{} renewed by {} for {}s",
                            lease.address,
                            lease.prefix,
                            lease.server,
                            lease.lease_time.as_secs()
                        ));
                    } else {
                        let gw = lease
                            .routers
                            .first()
                            .map(|g| format!(", gateway {g}"))
                            .unwrap_or_default();
                        let dns: Vec<String> = lease.dns.iter().map(ToString::to_string).collect();
                        console.info(&format!(
                            "network: {name}: DHCP lease {}/{} from {}{gw}, dns [{}], lease {}s",
                            lease.address,
                            lease.prefix,
                            lease.server,
                            dns.join(" "),
                            lease.lease_time.as_secs()
                        ));
                    }
                    let hostname = lease.hostname.clone();
                    self.update(name, |s| {
                        s.addresses = plan.addresses.clone();
                        s.addresses.push((IpAddr::V4(lease.address), lease.prefix));
                        s.dns = plan.dns.clone();
                        s.dns.extend(lease.dns.iter().map(|a| IpAddr::V4(*a)));
                        s.search = plan.search.clone();
                        s.search.extend(lease.domain.clone());
                        s.ntp = plan.ntp.clone();
                        s.ntp.extend(lease.ntp.iter().copied());
                        s.dhcp_hostname = lease.hostname.clone();
                        s.ready = true;
                    });
                    if let Some(h) = hostname {
                        self.offer_dhcp_hostname(&h);
                    }
                }
                Action::Deconfigure(lease) => {
                    let line = format!(
                        "network: {name}: DHCP lease {}/{} dropped",
                        lease.address, lease.prefix
                    );
                    if releasing {
                        console.info(&format!("{line} (released)"));
                    } else {
                        console.warn(&line);
                    }
                    if let Err(err) =
                        nl.del_address(link.index, IpAddr::V4(lease.address), lease.prefix)
                    {
                        console.warn(&format!("network: {name}: {err}"));
                    }
                    let _ = socket.set_address(None);
                    let address = IpAddr::V4(lease.address);
                    self.update(name, |s| {
                        s.addresses.retain(|(a, _)| *a != address);
                        s.ready = false;
                    });
                }
            }
        }
    }

    /// A DHCP host name is used unless configuration or `ip=` named the host.
    fn offer_dhcp_hostname(&self, name: &str) {
        let current = self
            .shared
            .status
            .lock()
            .expect("network status")
            .hostname
            .clone();
        match current {
            Some((_, "configuration" | "ip=" | "DHCP")) => {}
            _ => {
                if config::check_hostname(name).is_ok() {
                    self.set_hostname(name, "DHCP");
                }
            }
        }
    }

    fn set_hostname(&self, name: &str, source: &'static str) {
        if self.shared.env.set_hostname {
            if let Err(err) = nix::unistd::sethostname(name) {
                self.shared.console.warn(&format!(
                    "network: cannot set the host name to {name:?}: {err}"
                ));
                return;
            }
        }
        self.shared
            .console
            .info(&format!("network: host name {name} (from {source})"));
        self.shared.status.lock().expect("network status").hostname =
            Some((name.to_string(), source));
    }

    /// Changes one interface's status, rewrites resolv.conf and wakes [`Network::wait`].
    fn update(&self, name: &str, change: impl FnOnce(&mut InterfaceStatus)) {
        let text = {
            let mut status = self.shared.status.lock().expect("network status");
            change(status.interfaces.entry(name.to_string()).or_default());
            resolv_conf(&self.shared.plan, &status.interfaces)
        };
        if let Err(err) = write_atomic(&self.shared.env.resolv_conf, &text) {
            self.shared.console.warn(&format!(
                "network: cannot write {}: {err}",
                self.shared.env.resolv_conf.display()
            ));
        }
        self.shared.changed.notify_all();
    }
}

/// Applies a lease: address, default route through the first router, MTU.
fn configure_lease(
    nl: &mut Netlink,
    index: u32,
    plan: &InterfacePlan,
    lease: &Lease,
    renewed: bool,
) -> Result<(), netlink::NetlinkError> {
    let mtu = plan.mtu.or(lease.mtu.map(u32::from));
    if !renewed || mtu.is_some() {
        nl.link_up(index, mtu)?;
    }
    nl.add_address(index, IpAddr::V4(lease.address), lease.prefix)?;
    if let Some(gw) = lease.routers.first() {
        // Above static routes (metric 0), one metric per interface so each keeps its own.
        let metric = DHCP_METRIC_BASE + index;
        let default = |nl: &mut Netlink| {
            nl.add_route(
                index,
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
                Some(IpAddr::V4(*gw)),
                RouteProtocol::Dhcp,
                metric,
            )
        };
        if default(nl).is_err() {
            // A router outside the leased subnet (/32 leases in some clouds): reach it on-link first.
            nl.add_route(
                index,
                IpAddr::V4(*gw),
                32,
                None,
                RouteProtocol::Dhcp,
                metric,
            )?;
            default(nl)?;
        }
    }
    Ok(())
}

/// resolv.conf(5) text: global servers, then each interface's (by name), no duplicates.
pub fn resolv_conf(plan: &Plan, interfaces: &BTreeMap<String, InterfaceStatus>) -> String {
    let mut servers: Vec<IpAddr> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    for a in plan
        .dns
        .iter()
        .chain(interfaces.values().flat_map(|i| i.dns.iter()))
    {
        if !servers.contains(a) {
            servers.push(*a);
        }
    }
    for s in plan
        .search
        .iter()
        .chain(interfaces.values().flat_map(|i| i.search.iter()))
    {
        if !search.contains(s) {
            search.push(s.clone());
        }
    }
    let mut text =
        String::from("# Written by berth-init from [network] and DHCP; changes are overwritten.\n");
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    text
}

fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_merges_without_duplicates() {
        let (plan, _) = config::plan(
            &NetworkConfig {
                dns: vec!["10.0.0.53".into()],
                search: vec!["corp.test".into()],
                ..NetworkConfig::default()
            },
            None,
            &config::Sources::default(),
        );
        let mut interfaces = BTreeMap::new();
        interfaces.insert(
            "eth0".to_string(),
            InterfaceStatus {
                dns: vec!["10.0.2.3".parse().unwrap(), "10.0.0.53".parse().unwrap()],
                search: vec!["example.test".into()],
                ..InterfaceStatus::default()
            },
        );
        let text = resolv_conf(&plan, &interfaces);
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            [
                "nameserver 10.0.0.53",
                "nameserver 10.0.2.3",
                "search corp.test example.test"
            ]
        );
    }
}
