//! The DHCPv4 client state machine (RFC 2131 §4.4), without sockets.
//!
//! [`Client`] takes the clock and packets in and gives [`Action`]s out (send this packet,
//! configure this lease, drop this lease), so every transition is unit-tested without a
//! network; `dhcp_socket.rs` moves the packets and `manager.rs` applies the leases.
//! Packets are `dhcp_wire`'s (hand-written: see there why); the state machine is ours (no
//! maintained crate offers a client state machine that leaves the I/O to the caller).
//!
//! States: INIT → SELECTING (DISCOVER broadcast, first OFFER wins) → REQUESTING (REQUEST
//! broadcast) → BOUND → at T1 RENEWING (REQUEST unicast to the server) → at T2 REBINDING
//! (REQUEST broadcast) → at expiry the address is dropped and the client starts again in
//! INIT. A NAK in any state goes back to INIT. Retransmissions back off exponentially
//! (2 s doubling to 64 s) with jitter; RELEASE is sent on request.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::dhcp_wire::{code, Message, MessageType, Opcode};

/// First retransmission delay in SELECTING and REQUESTING.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(2);
/// Longest retransmission delay (RFC 2131 §4.1: 64 s).
pub const MAX_BACKOFF: Duration = Duration::from_secs(64);
/// REQUESTs sent in REQUESTING before starting over with a DISCOVER.
pub const MAX_REQUESTS: u32 = 4;
/// Shortest retransmission delay in RENEWING and REBINDING.
pub const MIN_RENEW_RETRY: Duration = Duration::from_secs(2);
/// Lease time assumed when the server sends none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Link-layer and IP broadcast, from 0.0.0.0 (or the leased address when rebinding).
    Broadcast,
    /// Unicast to the server through the normal IP stack (RENEWING, RELEASE).
    Unicast(Ipv4Addr),
}

/// A lease as granted by a server's ACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address (`yiaddr`).
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (option 1), or from the address class.
    pub prefix: u8,
    /// The server that granted it (option 54).
    pub server: Ipv4Addr,
    /// Routers (option 3); the first is the default gateway.
    pub routers: Vec<Ipv4Addr>,
    /// DNS servers (option 6).
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15), used as the search domain.
    pub domain: Option<String>,
    /// Host name (option 12).
    pub hostname: Option<String>,
    /// Interface MTU (option 26).
    pub mtu: Option<u16>,
    /// NTP servers (option 42).
    pub ntp: Vec<Ipv4Addr>,
    /// Lease time (option 51).
    pub lease_time: Duration,
    /// Renewal time T1 (option 58, default half the lease).
    pub t1: Duration,
    /// Rebinding time T2 (option 59, default 7/8 of the lease).
    pub t2: Duration,
    /// When the REQUEST that got this lease was sent: times count from there.
    pub start: Instant,
}

impl Lease {
    fn t1_at(&self) -> Instant {
        self.start + self.t1
    }
    fn t2_at(&self) -> Instant {
        self.start + self.t2
    }
    fn expiry(&self) -> Instant {
        self.start + self.lease_time
    }
}

/// Client states (RFC 2131 figure 5, without INIT-REBOOT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing sent yet.
    Init,
    /// DISCOVER sent, waiting for an OFFER.
    Selecting,
    /// REQUEST for an offer sent, waiting for the ACK.
    Requesting,
    /// Lease in use, waiting for T1.
    Bound,
    /// T1 passed: unicast REQUESTs to the server.
    Renewing,
    /// T2 passed: broadcast REQUESTs to any server.
    Rebinding,
    /// RELEASE sent; the client does nothing more.
    Released,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this packet.
    Send(Box<Message>, Destination),
    /// Configure (or refresh) this lease on the interface. `renewed` is false for a new
    /// address, true when an existing lease was extended.
    Configure { lease: Lease, renewed: bool },
    /// Remove this lease's address and routes (expired, NAKed or released).
    Deconfigure(Lease),
}

/// One DHCPv4 client for one interface.
#[derive(Debug)]
pub struct Client {
    mac: [u8; 6],
    client_id: Option<Vec<u8>>,
    hostname: Option<String>,
    state: State,
    xid: u32,
    rng: u64,
    deadline: Instant,
    attempts: u32,
    /// The REQUEST's start time (lease times count from it).
    sent_at: Instant,
    /// The offer being requested: (address, server).
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
    lease: Option<Lease>,
}

impl Client {
    /// A client in INIT whose first DISCOVER is due at `now`. `seed` feeds the transaction
    /// ids and the jitter (any varying number: the MAC and the boot time are fine).
    pub fn new(mac: [u8; 6], seed: u64, now: Instant) -> Self {
        let mut rng =
            seed ^ u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]) | 1;
        let xid = next_random(&mut rng) as u32;
        Self {
            mac,
            client_id: None,
            hostname: None,
            state: State::Init,
            xid,
            rng,
            deadline: now,
            attempts: 0,
            sent_at: now,
            offer: None,
            lease: None,
        }
    }

    /// Sends option 61 with this value (e.g. from `ip=dhcp,<type>,<value>`).
    pub fn with_client_id(mut self, id: Vec<u8>) -> Self {
        self.client_id = Some(id);
        self
    }

    /// Sends option 12 with this name.
    pub fn with_hostname(mut self, name: Option<String>) -> Self {
        self.hostname = name.filter(|n| !n.is_empty());
        self
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The lease in use, if any.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// When [`Client::on_timeout`] must be called next (`None` once released).
    pub fn deadline(&self) -> Option<Instant> {
        (self.state != State::Released).then_some(self.deadline)
    }

    /// The deadline passed: (re)transmit or move on.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self.state {
            State::Released => Vec::new(),
            State::Init | State::Selecting => self.discover(now),
            State::Requesting => {
                if self.attempts >= MAX_REQUESTS {
                    self.restart(now, Vec::new())
                } else {
                    let (address, server) = self.offer.expect("REQUESTING has an offer");
                    self.attempts += 1;
                    self.deadline = now + self.backoff();
                    vec![self.request(Some(address), Some(server), None, Destination::Broadcast)]
                }
            }
            State::Bound | State::Renewing | State::Rebinding => {
                let lease = self.lease.clone().expect("bound states have a lease");
                if now >= lease.expiry() {
                    let actions = vec![Action::Deconfigure(lease)];
                    self.lease = None;
                    return self.restart(now, actions);
                }
                if now >= lease.t2_at() {
                    if self.state != State::Rebinding {
                        self.xid = next_random(&mut self.rng) as u32;
                        self.sent_at = now;
                    }
                    self.state = State::Rebinding;
                    self.deadline = now + retry_until(now, lease.expiry());
                    vec![self.request(None, None, Some(lease.address), Destination::Broadcast)]
                } else {
                    if self.state == State::Bound {
                        self.xid = next_random(&mut self.rng) as u32;
                        self.sent_at = now;
                    }
                    self.state = State::Renewing;
                    self.deadline = now + retry_until(now, lease.t2_at());
                    vec![self.request(
                        None,
                        None,
                        Some(lease.address),
                        Destination::Unicast(lease.server),
                    )]
                }
            }
        }
    }

    /// A packet arrived on the interface (any packet: foreign ones are ignored).
    pub fn on_packet(&mut self, msg: &Message, now: Instant) -> Vec<Action> {
        if msg.op != Opcode::BootReply
            || msg.xid != self.xid
            || msg.hardware_address().get(..6) != Some(&self.mac[..])
        {
            return Vec::new();
        }
        let Some(kind) = msg.options.message_type() else {
            return Vec::new();
        };
        match (self.state, kind) {
            (State::Selecting, MessageType::Offer) => {
                let Some(server) = msg.options.server_id() else {
                    return Vec::new();
                };
                let address = msg.yiaddr;
                if address.is_unspecified() {
                    return Vec::new();
                }
                self.offer = Some((address, server));
                self.state = State::Requesting;
                self.attempts = 1;
                self.sent_at = now;
                self.deadline = now + self.backoff();
                vec![self.request(Some(address), Some(server), None, Destination::Broadcast)]
            }
            (State::Requesting | State::Renewing | State::Rebinding, MessageType::Ack) => {
                let Some(lease) =
                    lease_from_ack(msg, self.sent_at, self.lease.as_ref().map(|l| l.server))
                else {
                    return Vec::new();
                };
                let renewed = self
                    .lease
                    .as_ref()
                    .is_some_and(|old| old.address == lease.address);
                let mut actions = Vec::new();
                if let Some(old) = self.lease.take().filter(|old| old.address != lease.address) {
                    actions.push(Action::Deconfigure(old));
                }
                self.state = State::Bound;
                self.attempts = 0;
                self.offer = None;
                self.deadline = lease.t1_at();
                self.lease = Some(lease.clone());
                actions.push(Action::Configure { lease, renewed });
                actions
            }
            (State::Requesting | State::Renewing | State::Rebinding, MessageType::Nak) => {
                let actions = self
                    .lease
                    .take()
                    .map(Action::Deconfigure)
                    .into_iter()
                    .collect();
                self.restart(now, actions)
            }
            _ => Vec::new(),
        }
    }

    /// Gives the lease back (RELEASE, unicast to the server) and stops.
    pub fn release(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(lease) = self.lease.take() {
            self.xid = next_random(&mut self.rng) as u32;
            let mut msg = self.message(MessageType::Release, Some(lease.address));
            msg.options.set_server_id(lease.server);
            actions.push(Action::Send(
                Box::new(msg),
                Destination::Unicast(lease.server),
            ));
            actions.push(Action::Deconfigure(lease));
        }
        self.state = State::Released;
        actions
    }

    /// Back to INIT; the next DISCOVER goes out right away.
    fn restart(&mut self, now: Instant, mut actions: Vec<Action>) -> Vec<Action> {
        self.state = State::Init;
        self.offer = None;
        self.attempts = 0;
        self.deadline = now;
        actions.extend(self.discover(now));
        actions
    }

    fn discover(&mut self, now: Instant) -> Vec<Action> {
        if self.state != State::Selecting {
            self.attempts = 0;
        }
        self.state = State::Selecting;
        self.xid = next_random(&mut self.rng) as u32;
        self.attempts += 1;
        self.deadline = now + self.backoff();
        let mut msg = self.message(MessageType::Discover, None);
        self.add_request_options(&mut msg);
        vec![Action::Send(Box::new(msg), Destination::Broadcast)]
    }

    fn request(
        &self,
        requested: Option<Ipv4Addr>,
        server: Option<Ipv4Addr>,
        ciaddr: Option<Ipv4Addr>,
        dest: Destination,
    ) -> Action {
        let mut msg = self.message(MessageType::Request, ciaddr);
        if let Some(ip) = requested {
            msg.options.set_requested_ip(ip);
        }
        if let Some(ip) = server {
            msg.options.set_server_id(ip);
        }
        self.add_request_options(&mut msg);
        Action::Send(Box::new(msg), dest)
    }

    fn message(&self, kind: MessageType, ciaddr: Option<Ipv4Addr>) -> Message {
        let unspecified = Ipv4Addr::UNSPECIFIED;
        let mut msg = Message::request(self.xid, ciaddr.unwrap_or(unspecified), &self.mac);
        // Without an address we cannot receive a unicast reply: ask for broadcast.
        msg.set_broadcast(ciaddr.is_none());
        msg.options.set_message_type(kind);
        if let Some(id) = &self.client_id {
            msg.options.set_client_id(id.clone());
        }
        msg
    }

    fn add_request_options(&self, msg: &mut Message) {
        msg.options.set_parameter_request_list(&[
            code::SUBNET_MASK,
            code::ROUTER,
            code::DNS_SERVERS,
            code::HOSTNAME,
            code::DOMAIN_NAME,
            code::INTERFACE_MTU,
            code::NTP_SERVERS,
            code::LEASE_TIME,
            code::RENEWAL_TIME,
            code::REBINDING_TIME,
        ]);
        if let Some(name) = &self.hostname {
            msg.options.set_hostname(name);
        }
    }

    /// Exponential back-off for SELECTING/REQUESTING: 2 s, 4 s, … 64 s, ±1 s jitter.
    fn backoff(&mut self) -> Duration {
        let base = INITIAL_BACKOFF
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(5))
            .min(MAX_BACKOFF);
        let jitter_ms = next_random(&mut self.rng) % 2000;
        (base + Duration::from_millis(jitter_ms)).saturating_sub(Duration::from_secs(1))
    }
}

/// RFC 2131 §4.4.5: wait half the time left until `until`, at least [`MIN_RENEW_RETRY`],
/// but never past `until`.
fn retry_until(now: Instant, until: Instant) -> Duration {
    let left = until.saturating_duration_since(now);
    (left / 2)
        .max(MIN_RENEW_RETRY)
        .min(left.max(Duration::from_millis(100)))
}

/// Reads a lease out of an ACK. `fallback_server` is used when a renewal ACK lacks option 54.
fn lease_from_ack(
    msg: &Message,
    start: Instant,
    fallback_server: Option<Ipv4Addr>,
) -> Option<Lease> {
    let address = msg.yiaddr;
    if address.is_unspecified() {
        return None;
    }
    let opts = &msg.options;
    let server = opts.server_id().or(fallback_server)?;
    let lease_time = opts
        .lease_time()
        .map_or(DEFAULT_LEASE, |s| Duration::from_secs(u64::from(s)));
    let mut lease = Lease {
        address,
        prefix: opts
            .subnet_mask()
            .and_then(mask_prefix)
            .unwrap_or_else(|| class_prefix(address)),
        server,
        routers: opts.routers().unwrap_or_default(),
        dns: opts.dns_servers().unwrap_or_default(),
        domain: opts
            .domain_name()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        hostname: opts
            .hostname()
            .filter(|h| !h.is_empty())
            .map(str::to_string),
        mtu: opts.mtu(),
        ntp: opts.ntp_servers().unwrap_or_default(),
        lease_time,
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        start,
    };
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let (t1, t2) = (
        opts.renewal_time().map(secs),
        opts.rebinding_time().map(secs),
    );
    // Defaults of RFC 2131 §4.4.5, and T1 ≤ T2 ≤ lease whatever the server says.
    lease.t2 = t2.unwrap_or(lease.lease_time * 7 / 8).min(lease.lease_time);
    lease.t1 = t1.unwrap_or(lease.lease_time / 2).min(lease.t2);
    Some(lease)
}

/// The prefix length of a contiguous netmask.
pub fn mask_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Classful prefix, for servers that send no subnet mask.
fn class_prefix(address: Ipv4Addr) -> u8 {
    match address.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

/// xorshift64: jitter and transaction ids need to vary, not to be secret.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::dhcp_wire::Options;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    fn sent(actions: &[Action]) -> Vec<(&Message, Destination)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m, d) => Some((m.as_ref(), *d)),
                _ => None,
            })
            .collect()
    }

    /// A reply to `to` offering or granting [`ADDR`], with `extra` options set on it.
    fn reply(
        to: &Message,
        kind: MessageType,
        server: Ipv4Addr,
        extra: impl FnOnce(&mut Options),
    ) -> Message {
        let mut msg = Message::request(to.xid, Ipv4Addr::UNSPECIFIED, &MAC);
        msg.op = Opcode::BootReply;
        msg.yiaddr = ADDR;
        msg.siaddr = server;
        msg.options.set_message_type(kind);
        msg.options.set_server_id(server);
        extra(&mut msg.options);
        // What the client gets has been through the wire.
        Message::decode(&msg.encode()).unwrap()
    }

    fn no_options(_: &mut Options) {}

    fn ack_options(o: &mut Options) {
        o.set_subnet_mask(Ipv4Addr::new(255, 255, 255, 0));
        o.set_routers(&[SERVER]);
        o.set_dns_servers(&[Ipv4Addr::new(10, 0, 2, 3)]);
        o.set_domain_name("example.test");
        o.set_mtu(1400);
        o.set_ntp_servers(&[SERVER]);
        o.set_lease_time(120);
    }

    /// Runs a client to BOUND at `t0`; returns it and the last REQUEST.
    fn bound(t0: Instant) -> Client {
        let mut c = Client::new(MAC, 7, t0);
        let a = c.on_timeout(t0);
        let (discover, dest) = sent(&a)[0];
        assert_eq!(dest, Destination::Broadcast);
        assert_eq!(discover.options.message_type(), Some(MessageType::Discover));
        assert!(discover.broadcast());
        let offer = reply(discover, MessageType::Offer, SERVER, no_options);
        let a = c.on_packet(&offer, t0 + Duration::from_millis(10));
        let (request, dest) = sent(&a)[0];
        assert_eq!(dest, Destination::Broadcast);
        assert_eq!(request.options.message_type(), Some(MessageType::Request));
        assert_eq!(request.xid, discover.xid);
        assert_eq!(request.options.requested_ip(), Some(ADDR));
        assert_eq!(request.options.server_id(), Some(SERVER));
        assert_eq!(c.state(), State::Requesting);
        let ack = reply(request, MessageType::Ack, SERVER, ack_options);
        let a = c.on_packet(&ack, t0 + Duration::from_millis(20));
        assert_eq!(c.state(), State::Bound);
        match &a[..] {
            [Action::Configure {
                lease,
                renewed: false,
            }] => {
                assert_eq!(lease.address, ADDR);
                assert_eq!(lease.prefix, 24);
                assert_eq!(lease.routers, [SERVER]);
                assert_eq!(lease.dns, [Ipv4Addr::new(10, 0, 2, 3)]);
                assert_eq!(lease.domain.as_deref(), Some("example.test"));
                assert_eq!(lease.mtu, Some(1400));
                assert_eq!(lease.ntp, [SERVER]);
                assert_eq!(lease.t1, Duration::from_secs(60));
                assert_eq!(lease.t2, Duration::from_secs(105));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.deadline(),
            Some(t0 + Duration::from_millis(10) + Duration::from_secs(60))
        );
        c
    }

    #[test]
    fn discover_offer_request_ack() {
        bound(Instant::now());
    }

    #[test]
    fn renew_is_unicast_and_rebind_is_broadcast_then_expiry_restarts() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        let start = t0 + Duration::from_millis(10);
        // T1: unicast REQUEST with ciaddr, no server id / requested address.
        let a = c.on_timeout(start + Duration::from_secs(60));
        assert_eq!(c.state(), State::Renewing);
        let (renew, dest) = sent(&a)[0];
        assert_eq!(dest, Destination::Unicast(SERVER));
        assert_eq!(renew.ciaddr, ADDR);
        assert!(!renew.broadcast(), "ciaddr set: replies can be unicast");
        assert!(renew.options.server_id().is_none());
        assert!(renew.options.requested_ip().is_none());
        // Retransmissions stay unicast and never go past T2.
        let next = c.deadline().unwrap();
        assert!(
            next <= start + Duration::from_secs(105),
            "{:?}",
            next - start
        );
        let a = c.on_timeout(next);
        assert_eq!(sent(&a)[0].1, Destination::Unicast(SERVER));
        assert_eq!(
            sent(&a)[0].0.xid,
            renew.xid,
            "same transaction while renewing"
        );
        // T2: broadcast.
        let a = c.on_timeout(start + Duration::from_secs(105));
        assert_eq!(c.state(), State::Rebinding);
        let (rebind, dest) = sent(&a)[0];
        assert_eq!(dest, Destination::Broadcast);
        assert_eq!(rebind.ciaddr, ADDR);
        // Expiry: the address goes and a DISCOVER goes out.
        let a = c.on_timeout(start + Duration::from_secs(120));
        assert!(matches!(&a[0], Action::Deconfigure(l) if l.address == ADDR));
        assert_eq!(
            sent(&a)[0].0.options.message_type(),
            Some(MessageType::Discover)
        );
        assert_eq!(c.state(), State::Selecting);
        assert!(c.lease().is_none());
    }

    #[test]
    fn renewal_ack_extends_the_lease() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        let t1 = t0 + Duration::from_secs(61);
        let a = c.on_timeout(t1);
        let (renew, _) = sent(&a)[0];
        let ack = reply(renew, MessageType::Ack, SERVER, ack_options);
        let a = c.on_packet(&ack, t1 + Duration::from_millis(5));
        assert!(
            matches!(&a[..], [Action::Configure { renewed: true, .. }]),
            "{a:?}"
        );
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.deadline(), Some(t1 + Duration::from_secs(60)));
    }

    #[test]
    fn rebinding_ack_from_another_server() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        c.on_timeout(t0 + Duration::from_secs(61));
        let a = c.on_timeout(t0 + Duration::from_secs(106));
        let (rebind, _) = sent(&a)[0];
        let other = Ipv4Addr::new(10, 0, 2, 4);
        let ack = reply(rebind, MessageType::Ack, other, ack_options);
        let a = c.on_packet(&ack, t0 + Duration::from_secs(107));
        assert!(
            matches!(&a[..], [Action::Configure { renewed: true, lease }] if lease.server == other),
            "{a:?}"
        );
        // The next renewal goes to the new server.
        let a = c.on_timeout(c.deadline().unwrap());
        assert_eq!(sent(&a)[0].1, Destination::Unicast(other));
    }

    #[test]
    fn nak_restarts() {
        let t0 = Instant::now();
        let mut c = bound(t0);
        let a = c.on_timeout(t0 + Duration::from_secs(61));
        let (renew, _) = sent(&a)[0];
        let nak = reply(renew, MessageType::Nak, SERVER, no_options);
        let a = c.on_packet(&nak, t0 + Duration::from_secs(62));
        assert!(matches!(&a[0], Action::Deconfigure(_)));
        assert_eq!(
            sent(&a)[0].0.options.message_type(),
            Some(MessageType::Discover)
        );
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn foreign_and_stale_packets_are_ignored() {
        let t0 = Instant::now();
        let mut c = Client::new(MAC, 1, t0);
        let a = c.on_timeout(t0);
        let (discover, _) = sent(&a)[0];
        let mut wrong_xid = reply(discover, MessageType::Offer, SERVER, no_options);
        wrong_xid.xid = discover.xid.wrapping_add(1);
        assert!(c.on_packet(&wrong_xid, t0).is_empty());
        let mut wrong_mac = reply(discover, MessageType::Offer, SERVER, no_options);
        wrong_mac.chaddr[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert!(c.on_packet(&wrong_mac, t0).is_empty());
        let ack_in_selecting = reply(discover, MessageType::Ack, SERVER, ack_options);
        assert!(c.on_packet(&ack_in_selecting, t0).is_empty());
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn discover_backs_off_with_jitter_up_to_64s() {
        let mut now = Instant::now();
        let mut c = Client::new(MAC, 3, now);
        let mut delays = Vec::new();
        for _ in 0..9 {
            let a = c.on_timeout(now);
            assert_eq!(
                sent(&a)[0].0.options.message_type(),
                Some(MessageType::Discover)
            );
            let next = c.deadline().unwrap();
            delays.push((next - now).as_secs_f64());
            now = next;
        }
        for (i, d) in delays.iter().enumerate() {
            let base = (2f64 * 2f64.powi(i as i32)).min(64.0);
            assert!(
                (base - 1.0..=base + 1.0).contains(d),
                "attempt {i}: {d} (base {base})"
            );
        }
    }

    #[test]
    fn requesting_gives_up_after_four_requests() {
        let t0 = Instant::now();
        let mut c = Client::new(MAC, 9, t0);
        let a = c.on_timeout(t0);
        let offer = reply(sent(&a)[0].0, MessageType::Offer, SERVER, no_options);
        c.on_packet(&offer, t0);
        let mut now = t0;
        for _ in 1..MAX_REQUESTS {
            now = c.deadline().unwrap();
            let a = c.on_timeout(now);
            assert_eq!(
                sent(&a)[0].0.options.message_type(),
                Some(MessageType::Request)
            );
        }
        let a = c.on_timeout(c.deadline().unwrap());
        assert_eq!(
            sent(&a)[0].0.options.message_type(),
            Some(MessageType::Discover)
        );
        assert!(now > t0);
    }

    #[test]
    fn release_is_unicast_and_stops() {
        let mut c = bound(Instant::now());
        let a = c.release();
        let (release, dest) = sent(&a)[0];
        assert_eq!(release.options.message_type(), Some(MessageType::Release));
        assert_eq!(dest, Destination::Unicast(SERVER));
        assert_eq!(release.ciaddr, ADDR);
        assert!(matches!(a.last(), Some(Action::Deconfigure(_))));
        assert_eq!(c.deadline(), None);
    }

    #[test]
    fn lease_times_default_and_are_clamped() {
        let t0 = Instant::now();
        let mut ack = Message::request(1, Ipv4Addr::UNSPECIFIED, &MAC);
        ack.yiaddr = ADDR;
        ack.options.set_server_id(SERVER);
        ack.options.set_lease_time(100);
        ack.options.set_renewal_time(500);
        let lease = lease_from_ack(&ack, t0, None).unwrap();
        assert_eq!(lease.t2, Duration::from_millis(87_500));
        assert_eq!(lease.t1, lease.t2);
        assert_eq!(lease.prefix, 8, "class A without a mask");
    }

    #[test]
    fn requests_are_built_without_randomness() {
        let msg = Message::request(0xdead_beef, ADDR, &MAC);
        assert_eq!(msg.xid, 0xdead_beef);
        assert_eq!(msg.ciaddr, ADDR);
        assert_eq!(msg.op, Opcode::BootRequest);
        assert_eq!(msg.hardware_address(), &MAC[..]);
        assert!(msg.options.message_type().is_none());
    }

    #[test]
    fn netmask_prefixes() {
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }

    #[test]
    fn packets_round_trip_through_the_wire_format() {
        let mut c = Client::new(MAC, 5, Instant::now())
            .with_client_id(vec![1, 0x52, 0x54, 0, 0x12, 0x34, 0x56])
            .with_hostname(Some("guest".into()));
        let a = c.on_timeout(Instant::now());
        let discover = sent(&a)[0].0;
        let back = Message::decode(&discover.encode()).unwrap();
        assert_eq!(&back, discover);
        assert_eq!(back.options.message_type(), Some(MessageType::Discover));
        assert_eq!(back.options.hostname(), Some("guest"));
        assert_eq!(back.options.client_id().map(<[u8]>::len), Some(7));
        assert_eq!(
            back.options.parameter_request_list().map(<[u8]>::len),
            Some(10)
        );
        assert_eq!(back.hardware_address(), &MAC);
    }
}
