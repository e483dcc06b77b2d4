//! Moving DHCP packets: a packet socket for broadcasts before the interface has an address,
//! and a UDP socket for unicast renewals and releases.
//!
//! Before a lease the interface has no address, and the kernel's IP stack will neither send
//! from 0.0.0.0 reliably nor deliver replies addressed to the offered address (a server may
//! unicast the OFFER to `yiaddr` despite the broadcast flag, and `rp_filter` can drop
//! broadcasts). Like systemd-networkd, dhcpcd and busybox udhcpc we therefore use an
//! `AF_PACKET` datagram socket bound to the interface: we write the IPv4 and UDP headers of
//! what we send and read every IPv4 packet that arrives, keeping UDP to port 68. Unicast
//! packets (RENEWING, RELEASE) go through a normal UDP socket bound to the leased address
//! and the device, so the kernel does routing and ARP. Replies are read from both.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::dhcp::Destination;
use super::dhcp_wire::Message;

/// DHCP client port.
const CLIENT_PORT: u16 = 68;
/// DHCP server port.
const SERVER_PORT: u16 = 67;

/// Errors sending or receiving DHCP packets.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A socket call failed.
    #[error("{op}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> SocketError {
    move |source| SocketError::Io { op, source }
}

fn errno(op: &'static str) -> impl FnOnce(Errno) -> SocketError {
    move |e| SocketError::Io {
        op,
        source: std::io::Error::from(e),
    }
}

/// The sockets of one interface's DHCP client.
pub struct DhcpSocket {
    ifindex: u32,
    ifname: String,
    packet: OwnedFd,
    udp: Option<(Ipv4Addr, UdpSocket)>,
}

impl DhcpSocket {
    /// Opens the packet socket on interface `ifindex` (`ifname` is for `SO_BINDTODEVICE` of
    /// the UDP socket, later).
    pub fn open(ifindex: u32, ifname: &str) -> Result<Self, SocketError> {
        let protocol = (libc::ETH_P_IP as u16).to_be();
        // SAFETY: plain socket(2) call; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(protocol),
            )
        };
        let fd = Errno::result(fd).map_err(errno("socket(AF_PACKET)"))?;
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let packet = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = sockaddr_ll(ifindex, protocol, None);
        // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
        let res = unsafe {
            libc::bind(
                packet.as_raw_fd(),
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        Errno::result(res).map_err(errno("bind(AF_PACKET)"))?;
        Ok(Self {
            ifindex,
            ifname: ifname.to_string(),
            packet,
            udp: None,
        })
    }

    /// Makes unicast possible from `address` (the leased address), or impossible (`None`).
    pub fn set_address(&mut self, address: Option<Ipv4Addr>) -> Result<(), SocketError> {
        match address {
            None => self.udp = None,
            Some(a) if self.udp.as_ref().is_some_and(|(cur, _)| *cur == a) => {}
            Some(a) => {
                self.udp = None;
                let sock = UdpSocket::bind(SocketAddrV4::new(a, CLIENT_PORT))
                    .map_err(io("bind(udp :68)"))?;
                let device = std::ffi::OsString::from(&self.ifname);
                nix::sys::socket::setsockopt(
                    &sock,
                    nix::sys::socket::sockopt::BindToDevice,
                    &device,
                )
                .map_err(errno("SO_BINDTODEVICE"))?;
                sock.set_nonblocking(true).map_err(io("O_NONBLOCK"))?;
                self.udp = Some((a, sock));
            }
        }
        Ok(())
    }

    /// Sends `msg`.
    pub fn send(&self, msg: &Message, dest: Destination) -> Result<(), SocketError> {
        let payload = msg.encode();
        match dest {
            Destination::Unicast(server) => {
                let (_, sock) = self.udp.as_ref().ok_or_else(|| SocketError::Io {
                    op: "unicast send",
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "no leased address",
                    ),
                })?;
                sock.send_to(&payload, SocketAddrV4::new(server, SERVER_PORT))
                    .map_err(io("sendto(udp)"))?;
            }
            Destination::Broadcast => {
                let frame = ipv4_udp(
                    msg.ciaddr,
                    Ipv4Addr::BROADCAST,
                    CLIENT_PORT,
                    SERVER_PORT,
                    &payload,
                );
                let addr = sockaddr_ll(
                    self.ifindex,
                    (libc::ETH_P_IP as u16).to_be(),
                    Some([0xff; 6]),
                );
                // SAFETY: `frame` and `addr` are valid for the lengths passed.
                let res = unsafe {
                    libc::sendto(
                        self.packet.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        std::ptr::from_ref(&addr).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                Errno::result(res).map_err(errno("sendto(AF_PACKET)"))?;
            }
        }
        Ok(())
    }

    /// Waits until `deadline` for one DHCP reply; `None` at the deadline. Packets that are
    /// not DHCP replies are skipped.
    pub fn recv(&self, deadline: Instant) -> Result<Option<Message>, SocketError> {
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
            let (packet_ready, udp_ready) = {
                let mut fds = vec![PollFd::new(self.packet.as_fd(), PollFlags::POLLIN)];
                if let Some((_, udp)) = &self.udp {
                    fds.push(PollFd::new(udp.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::from(ms)) {
                    Ok(0) | Err(Errno::EINTR) => continue,
                    Ok(_) => {}
                    Err(e) => return Err(errno("poll")(e)),
                }
                let ready = |f: &PollFd| {
                    f.revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLERR))
                };
                (ready(&fds[0]), fds.get(1).is_some_and(ready))
            };
            if packet_ready {
                // SAFETY: `buf` is valid for writes of its length.
                let n = unsafe {
                    libc::recv(
                        self.packet.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                    )
                };
                match Errno::result(n) {
                    Ok(n) => {
                        if let Some(msg) =
                            udp_payload(&buf[..n as usize], CLIENT_PORT).and_then(decode)
                        {
                            return Ok(Some(msg));
                        }
                    }
                    Err(Errno::EAGAIN | Errno::EINTR | Errno::ENETDOWN) => {}
                    Err(e) => return Err(errno("recv(AF_PACKET)")(e)),
                }
            }
            if udp_ready {
                if let Some((_, udp)) = &self.udp {
                    // Errors here are ICMP unreachables of earlier unicasts: not fatal.
                    if let Ok(n) = udp.recv(&mut buf) {
                        if let Some(msg) = decode(&buf[..n]) {
                            return Ok(Some(msg));
                        }
                    }
                }
            }
        }
    }
}

/// Malformed packets are dropped like foreign ones: anyone on the link can send them, and
/// the client retransmits until a good reply comes.
fn decode(bytes: &[u8]) -> Option<Message> {
    Message::decode(bytes).ok()
}

fn sockaddr_ll(ifindex: u32, protocol_be: u16, broadcast: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all zeroes is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol_be;
    addr.sll_ifindex = ifindex as i32;
    if let Some(mac) = broadcast {
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&mac);
    }
    addr
}

/// The Internet checksum (RFC 1071) over `data`, starting from the partial sum `sum`.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + UDP datagram carrying `payload`, checksums filled in.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0x10]); // version 4, IHL 5; TOS low delay
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // id, flags, fragment offset
    p.extend_from_slice(&[64, 17, 0, 0]); // TTL, UDP, checksum (below)
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let ip_sum = checksum(&p[..20], 0);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    // Pseudo-header: source, destination, protocol, UDP length.
    let mut pseudo = 0u32;
    for o in [src.octets(), dst.octets()] {
        pseudo += u32::from(u16::from_be_bytes([o[0], o[1]]))
            + u32::from(u16::from_be_bytes([o[2], o[3]]));
    }
    pseudo += 17 + udp_len as u32;
    let udp_sum = match checksum(&p[20..], pseudo) {
        0 => 0xffff,
        s => s,
    };
    p[26..28].copy_from_slice(&udp_sum.to_be_bytes());
    p
}

/// The UDP payload of an IPv4 packet to `port`, if that is what `packet` is.
pub fn udp_payload(packet: &[u8], port: u16) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first >> 4 != 4 || packet.get(9) != Some(&17) {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    // Fragments are not for us (a DHCP reply fits one packet).
    let frag = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]);
    if frag & 0x3fff != 0 || ihl < 20 || total > packet.len() {
        return None;
    }
    let udp = packet.get(ihl..total)?;
    let dport = u16::from_be_bytes([*udp.get(2)?, *udp.get(3)?]);
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if dport != port || len < 8 || len > udp.len() {
        return None;
    }
    Some(&udp[8..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_round_trips_and_checksums_verify() {
        let payload = b"hello dhcp!";
        let p = ipv4_udp(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, payload);
        assert_eq!(p.len(), 20 + 8 + payload.len());
        // A correct header sums to zero.
        assert_eq!(checksum(&p[..20], 0), 0);
        assert_eq!(udp_payload(&p, 67), Some(&payload[..]));
        assert_eq!(udp_payload(&p, 68), None);
        assert_eq!(udp_payload(&p[..10], 67), None);
    }

    #[test]
    fn known_header_checksum() {
        // The worked example of the IPv4 header checksum (Wikipedia, "IPv4 header checksum").
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header, 0), 0xb861);
    }

    #[test]
    fn fragments_and_other_protocols_are_skipped() {
        let mut p = ipv4_udp(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::BROADCAST,
            67,
            68,
            b"x",
        );
        assert!(udp_payload(&p, 68).is_some());
        p[6] = 0x20; // more fragments
        assert!(udp_payload(&p, 68).is_none());
        p[6] = 0;
        p[9] = 6; // TCP
        assert!(udp_payload(&p, 68).is_none());
    }
}
