//! DHCPv4 messages on the wire (RFC 2131 §2, RFC 2132, RFC 3396), hand-written.
//!
//! Why not a crate: `dhcproto`, the one we used, has a mandatory dependency on
//! `hickory-proto` (a whole DNS protocol stack, for the DNS-name types of a few options we
//! never send or read), and PID 1 must not link one (issue 15:
//! `cargo tree -e normal,build -p berth-init` has no `hickory`). The client needs little:
//! the BOOTP fixed header, the magic cookie and about fifteen options, so this module is
//! that and no more.
//!
//! Decoding is strict where a wrong value would be used and lenient where nothing is lost:
//! a truncated header, a bad cookie, an option running past its field, or an option the
//! client reads with the wrong length (a 3-byte subnet mask, a router list that is not a
//! multiple of 4) is a [`DecodeError`] naming what and the byte offset in the DHCP payload;
//! options we do not read are kept as raw bytes, unchecked; a missing END is accepted (the
//! field's end ends the options). Option overload (52) is honoured: options continue in
//! `file`, then `sname`. Repeated codes are concatenated (RFC 3396 long options), so two
//! 1-byte message types make one 2-byte option and a wrong-length error. Nothing here
//! panics on any input (see the tests).

use std::net::Ipv4Addr;

/// Option codes (RFC 2132) of the options the client sends or reads.
pub mod code {
    /// Padding, no length byte.
    pub const PAD: u8 = 0;
    /// Subnet mask, 4 bytes.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers, n × 4 bytes.
    pub const ROUTER: u8 = 3;
    /// DNS servers, n × 4 bytes.
    pub const DNS_SERVERS: u8 = 6;
    /// Host name, text.
    pub const HOSTNAME: u8 = 12;
    /// Domain name, text.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU, 2 bytes.
    pub const INTERFACE_MTU: u8 = 26;
    /// NTP servers, n × 4 bytes.
    pub const NTP_SERVERS: u8 = 42;
    /// Requested IP address, 4 bytes.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time in seconds, 4 bytes.
    pub const LEASE_TIME: u8 = 51;
    /// Option overload: 1 = `file`, 2 = `sname`, 3 = both carry options.
    pub const OVERLOAD: u8 = 52;
    /// DHCP message type, 1 byte.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier, 4 bytes.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list, one code per byte.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Renewal (T1) time in seconds, 4 bytes.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time in seconds, 4 bytes.
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier, type byte and value.
    pub const CLIENT_ID: u8 = 61;
    /// End of options, no length byte.
    pub const END: u8 = 255;
}

/// Offsets of the fixed header's fields (RFC 2131 figure 1).
const SNAME: usize = 44;
const FILE: usize = 108;
const COOKIE: usize = 236;
/// Fixed header plus magic cookie: where the options field starts.
pub const HEADER_LEN: usize = 240;
/// The magic cookie (RFC 2131 §3): 99.130.83.99.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// RFC 1542 §2.1: relays may drop BOOTP messages shorter than 300 bytes; we pad to this.
const MIN_LEN: usize = 300;
/// The broadcast bit of `flags` (RFC 2131 §2, figure 2).
const BROADCAST_FLAG: u16 = 0x8000;

/// `op`: which way the message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Client to server.
    BootRequest,
    /// Server to client.
    BootReply,
}

/// DHCP message type (option 53, RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 1
    Discover,
    /// 2
    Offer,
    /// 3
    Request,
    /// 4
    Decline,
    /// 5
    Ack,
    /// 6
    Nak,
    /// 7
    Release,
    /// 8
    Inform,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Discover => 1,
            Self::Offer => 2,
            Self::Request => 3,
            Self::Decline => 4,
            Self::Ack => 5,
            Self::Nak => 6,
            Self::Release => 7,
            Self::Inform => 8,
        }
    }
}

/// Where an option was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The options field after the cookie.
    Options,
    /// The `file` field, overloaded (option 52).
    File,
    /// The `sname` field, overloaded (option 52).
    Sname,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Options => "options",
            Self::File => "file",
            Self::Sname => "sname",
        })
    }
}

/// Why a DHCP payload could not be read. Offsets count from the first byte of the BOOTP
/// header (the UDP payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the fixed header and cookie.
    #[error("truncated BOOTP header: {len} bytes, the fixed header and magic cookie need 240")]
    TruncatedHeader {
        /// The payload's length (where it ended).
        len: usize,
    },
    /// `op` is neither BOOTREQUEST nor BOOTREPLY.
    #[error("unknown op {op} at offset 0 (expected 1 BOOTREQUEST or 2 BOOTREPLY)")]
    BadOpcode {
        /// The byte found.
        op: u8,
    },
    /// `hlen` larger than `chaddr`.
    #[error("hardware address length {hlen} at offset 2 exceeds chaddr's 16 bytes")]
    BadHardwareLength {
        /// The byte found.
        hlen: u8,
    },
    /// Not the DHCP magic cookie (a plain BOOTP message, or garbage).
    #[error("bad magic cookie {found:02x?} at offset 236 (expected [63, 82, 53, 63])")]
    BadCookie {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// An option's code is the last byte of its field: no length byte.
    #[error("option {code} at offset {offset} in the {field} field: length byte missing")]
    MissingLength {
        /// The option code.
        code: u8,
        /// Offset of the code byte.
        offset: usize,
        /// The field being read.
        field: Field,
    },
    /// An option's length goes past the end of its field.
    #[error(
        "option {code} at offset {offset} in the {field} field: length {len} runs past the \
         field's end at offset {end}"
    )]
    PastEnd {
        /// The option code.
        code: u8,
        /// Offset of the code byte.
        offset: usize,
        /// The length byte.
        len: u8,
        /// Offset just past the field.
        end: usize,
        /// The field being read.
        field: Field,
    },
    /// An option the client reads has a length its type does not allow (after RFC 3396
    /// concatenation of repeated codes).
    #[error("option {name} ({code}) at offset {offset}: length {len}, expected {expected}")]
    WrongLength {
        /// The option code.
        code: u8,
        /// Its name.
        name: &'static str,
        /// Offset of the (first) code byte.
        offset: usize,
        /// The (concatenated) length.
        len: usize,
        /// What the type allows.
        expected: &'static str,
    },
    /// A text option the client reads is not UTF-8.
    #[error("option {name} ({code}) at offset {offset}: not UTF-8")]
    NotUtf8 {
        /// The option code.
        code: u8,
        /// Its name.
        name: &'static str,
        /// Offset of the (first) code byte.
        offset: usize,
    },
    /// Option overload with a value other than 1, 2 or 3.
    #[error("option overload (52) at offset {offset}: value {value}, expected 1, 2 or 3")]
    BadOverload {
        /// Offset of the code byte.
        offset: usize,
        /// The value found.
        value: u8,
    },
}

/// The value shapes of the options the client reads.
#[derive(Clone, Copy)]
enum Shape {
    /// Exactly this many bytes.
    Fixed(usize, &'static str),
    /// One or more IPv4 addresses.
    Addresses,
    /// At least this many bytes.
    AtLeast(usize, &'static str),
    /// Text, at least one byte, UTF-8.
    Text,
}

/// The options checked on decode; anything else is kept unchecked. One table, so the
/// accessors below and the decoder cannot disagree on a length.
const CHECKED: &[(u8, &str, Shape)] = &[
    (code::SUBNET_MASK, "subnet mask", Shape::Fixed(4, "4")),
    (code::ROUTER, "router", Shape::Addresses),
    (code::DNS_SERVERS, "DNS servers", Shape::Addresses),
    (code::HOSTNAME, "host name", Shape::Text),
    (code::DOMAIN_NAME, "domain name", Shape::Text),
    (code::INTERFACE_MTU, "interface MTU", Shape::Fixed(2, "2")),
    (code::NTP_SERVERS, "NTP servers", Shape::Addresses),
    (
        code::REQUESTED_IP,
        "requested IP address",
        Shape::Fixed(4, "4"),
    ),
    (code::LEASE_TIME, "lease time", Shape::Fixed(4, "4")),
    (code::MESSAGE_TYPE, "message type", Shape::Fixed(1, "1")),
    (code::SERVER_ID, "server identifier", Shape::Fixed(4, "4")),
    (
        code::PARAMETER_REQUEST_LIST,
        "parameter request list",
        Shape::AtLeast(1, "at least 1"),
    ),
    (code::RENEWAL_TIME, "renewal time", Shape::Fixed(4, "4")),
    (code::REBINDING_TIME, "rebinding time", Shape::Fixed(4, "4")),
    (
        code::CLIENT_ID,
        "client identifier",
        Shape::AtLeast(2, "at least 2"),
    ),
];

fn check(code: u8, value: &[u8], offset: usize) -> Result<(), DecodeError> {
    let Some(&(_, name, shape)) = CHECKED.iter().find(|(c, _, _)| *c == code) else {
        return Ok(());
    };
    let wrong = |expected| DecodeError::WrongLength {
        code,
        name,
        offset,
        len: value.len(),
        expected,
    };
    match shape {
        Shape::Fixed(n, expected) if value.len() != n => Err(wrong(expected)),
        Shape::Addresses if value.is_empty() || !value.len().is_multiple_of(4) => {
            Err(wrong("a non-zero multiple of 4"))
        }
        Shape::AtLeast(n, expected) if value.len() < n => Err(wrong(expected)),
        Shape::Text if value.is_empty() => Err(wrong("at least 1")),
        Shape::Text if std::str::from_utf8(value).is_err() => {
            Err(DecodeError::NotUtf8 { code, name, offset })
        }
        _ => Ok(()),
    }
}

/// Options in the order first seen, each code once, values as raw bytes (repeated codes
/// concatenated). PAD, END and OVERLOAD are not options here: the codec writes and
/// consumes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    entries: Vec<(u8, Vec<u8>)>,
}

impl Options {
    /// The raw value of option `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets option `code` to `value`, in place if present, else at the end. Values longer
    /// than 255 bytes are split on encode (RFC 3396).
    pub fn set(&mut self, code: u8, value: Vec<u8>) {
        match self.entries.iter_mut().find(|(c, _)| *c == code) {
            Some((_, v)) => *v = value,
            None => self.entries.push((code, value)),
        }
    }

    /// Removes option `code`.
    pub fn remove(&mut self, code: u8) {
        self.entries.retain(|(c, _)| *c != code);
    }

    /// All options in order, as (code, value).
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.entries.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    /// Appends a decoded fragment: a repeated code is concatenated to the first.
    fn append(&mut self, code: u8, value: &[u8]) -> bool {
        match self.entries.iter_mut().find(|(c, _)| *c == code) {
            Some((_, v)) => {
                v.extend_from_slice(value);
                false
            }
            None => {
                self.entries.push((code, value.to_vec()));
                true
            }
        }
    }

    fn address(&self, code: u8) -> Option<Ipv4Addr> {
        <[u8; 4]>::try_from(self.get(code)?)
            .ok()
            .map(Ipv4Addr::from)
    }

    fn addresses(&self, code: u8) -> Option<Vec<Ipv4Addr>> {
        let v = self.get(code)?;
        (!v.is_empty() && v.len().is_multiple_of(4)).then(|| {
            v.chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect()
        })
    }

    fn seconds(&self, code: u8) -> Option<u32> {
        <[u8; 4]>::try_from(self.get(code)?)
            .ok()
            .map(u32::from_be_bytes)
    }

    /// Text without the trailing NULs some servers add (RFC 2132 §2 says not to).
    fn text(&self, code: u8) -> Option<&str> {
        let v = self.get(code)?;
        let end = v.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        std::str::from_utf8(&v[..end]).ok()
    }

    fn set_addresses(&mut self, code: u8, addrs: &[Ipv4Addr]) {
        self.set(code, addrs.iter().flat_map(|a| a.octets()).collect());
    }

    /// Option 53; `None` if absent or not a type of RFC 2132 §9.6.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.get(code::MESSAGE_TYPE)? {
            [v] => MessageType::from_u8(*v),
            _ => None,
        }
    }
    /// Sets option 53.
    pub fn set_message_type(&mut self, kind: MessageType) {
        self.set(code::MESSAGE_TYPE, vec![kind.to_u8()]);
    }

    /// Option 54.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.address(code::SERVER_ID)
    }
    /// Sets option 54.
    pub fn set_server_id(&mut self, ip: Ipv4Addr) {
        self.set(code::SERVER_ID, ip.octets().to_vec());
    }

    /// Option 50.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.address(code::REQUESTED_IP)
    }
    /// Sets option 50.
    pub fn set_requested_ip(&mut self, ip: Ipv4Addr) {
        self.set(code::REQUESTED_IP, ip.octets().to_vec());
    }

    /// Option 61 (type byte then value).
    pub fn client_id(&self) -> Option<&[u8]> {
        self.get(code::CLIENT_ID)
    }
    /// Sets option 61.
    pub fn set_client_id(&mut self, id: Vec<u8>) {
        self.set(code::CLIENT_ID, id);
    }

    /// Option 55: the codes asked for.
    pub fn parameter_request_list(&self) -> Option<&[u8]> {
        self.get(code::PARAMETER_REQUEST_LIST)
    }
    /// Sets option 55.
    pub fn set_parameter_request_list(&mut self, codes: &[u8]) {
        self.set(code::PARAMETER_REQUEST_LIST, codes.to_vec());
    }

    /// Option 12.
    pub fn hostname(&self) -> Option<&str> {
        self.text(code::HOSTNAME)
    }
    /// Sets option 12.
    pub fn set_hostname(&mut self, name: &str) {
        self.set(code::HOSTNAME, name.as_bytes().to_vec());
    }

    /// Option 1.
    pub fn subnet_mask(&self) -> Option<Ipv4Addr> {
        self.address(code::SUBNET_MASK)
    }
    /// Sets option 1.
    pub fn set_subnet_mask(&mut self, mask: Ipv4Addr) {
        self.set(code::SUBNET_MASK, mask.octets().to_vec());
    }

    /// Option 3.
    pub fn routers(&self) -> Option<Vec<Ipv4Addr>> {
        self.addresses(code::ROUTER)
    }
    /// Sets option 3.
    pub fn set_routers(&mut self, addrs: &[Ipv4Addr]) {
        self.set_addresses(code::ROUTER, addrs);
    }

    /// Option 6.
    pub fn dns_servers(&self) -> Option<Vec<Ipv4Addr>> {
        self.addresses(code::DNS_SERVERS)
    }
    /// Sets option 6.
    pub fn set_dns_servers(&mut self, addrs: &[Ipv4Addr]) {
        self.set_addresses(code::DNS_SERVERS, addrs);
    }

    /// Option 15.
    pub fn domain_name(&self) -> Option<&str> {
        self.text(code::DOMAIN_NAME)
    }
    /// Sets option 15.
    pub fn set_domain_name(&mut self, name: &str) {
        self.set(code::DOMAIN_NAME, name.as_bytes().to_vec());
    }

    /// Option 26.
    pub fn mtu(&self) -> Option<u16> {
        <[u8; 2]>::try_from(self.get(code::INTERFACE_MTU)?)
            .ok()
            .map(u16::from_be_bytes)
    }
    /// Sets option 26.
    pub fn set_mtu(&mut self, mtu: u16) {
        self.set(code::INTERFACE_MTU, mtu.to_be_bytes().to_vec());
    }

    /// Option 42.
    pub fn ntp_servers(&self) -> Option<Vec<Ipv4Addr>> {
        self.addresses(code::NTP_SERVERS)
    }
    /// Sets option 42.
    pub fn set_ntp_servers(&mut self, addrs: &[Ipv4Addr]) {
        self.set_addresses(code::NTP_SERVERS, addrs);
    }

    /// Option 51, seconds.
    pub fn lease_time(&self) -> Option<u32> {
        self.seconds(code::LEASE_TIME)
    }
    /// Sets option 51.
    pub fn set_lease_time(&mut self, secs: u32) {
        self.set(code::LEASE_TIME, secs.to_be_bytes().to_vec());
    }

    /// Option 58 (T1), seconds.
    pub fn renewal_time(&self) -> Option<u32> {
        self.seconds(code::RENEWAL_TIME)
    }
    /// Sets option 58.
    pub fn set_renewal_time(&mut self, secs: u32) {
        self.set(code::RENEWAL_TIME, secs.to_be_bytes().to_vec());
    }

    /// Option 59 (T2), seconds.
    pub fn rebinding_time(&self) -> Option<u32> {
        self.seconds(code::REBINDING_TIME)
    }
    /// Sets option 59.
    pub fn set_rebinding_time(&mut self, secs: u32) {
        self.set(code::REBINDING_TIME, secs.to_be_bytes().to_vec());
    }
}

/// One DHCP message: the BOOTP fixed header and the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Request or reply.
    pub op: Opcode,
    /// Hardware type (1: Ethernet).
    pub htype: u8,
    /// Hardware address length (6 for Ethernet), at most 16.
    pub hlen: u8,
    /// Relay hops.
    pub hops: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags; only the broadcast bit is defined.
    pub flags: u16,
    /// Client address, when it has one.
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one offered or granted.
    pub yiaddr: Ipv4Addr,
    /// Next server (boot).
    pub siaddr: Ipv4Addr,
    /// Relay agent.
    pub giaddr: Ipv4Addr,
    /// Client hardware address, the first `hlen` bytes used.
    pub chaddr: [u8; 16],
    /// Server host name (or options, if overloaded).
    pub sname: [u8; 64],
    /// Boot file name (or options, if overloaded).
    pub file: [u8; 128],
    /// The options, without PAD, END and OVERLOAD.
    pub options: Options,
}

impl Message {
    /// An empty BOOTREQUEST from Ethernet address `mac`: no options, flags clear.
    ///
    /// Draws no randomness, on purpose: dhcproto's constructors called `rand::random()`,
    /// whose `getrandom(2)` blocks until the kernel's entropy pool is initialised — at early
    /// boot in a VM without an entropy source, for many seconds (seen under QEMU TCG: no
    /// DISCOVER ever left). The caller supplies `xid`.
    pub fn request(xid: u32, ciaddr: Ipv4Addr, mac: &[u8; 6]) -> Self {
        let mut chaddr = [0; 16];
        chaddr[..6].copy_from_slice(mac);
        Self {
            op: Opcode::BootRequest,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid,
            secs: 0,
            flags: 0,
            ciaddr,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: [0; 64],
            file: [0; 128],
            options: Options::default(),
        }
    }

    /// The first `hlen` bytes of `chaddr`.
    pub fn hardware_address(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen).min(16)]
    }

    /// Whether the broadcast flag is set.
    pub fn broadcast(&self) -> bool {
        self.flags & BROADCAST_FLAG != 0
    }

    /// Sets or clears the broadcast flag.
    pub fn set_broadcast(&mut self, on: bool) {
        if on {
            self.flags |= BROADCAST_FLAG;
        } else {
            self.flags &= !BROADCAST_FLAG;
        }
    }

    /// The UDP payload: header, cookie, options (each value over 255 bytes split into
    /// consecutive pieces of the same code, RFC 3396), END, PAD up to 300 bytes. All
    /// options go in the options field (we never overload).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_LEN);
        b.push(match self.op {
            Opcode::BootRequest => 1,
            Opcode::BootReply => 2,
        });
        b.extend_from_slice(&[self.htype, self.hlen, self.hops]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.extend_from_slice(&self.sname);
        b.extend_from_slice(&self.file);
        b.extend_from_slice(&MAGIC_COOKIE);
        for (code, value) in self.options.iter() {
            if matches!(code, code::PAD | code::END | code::OVERLOAD) {
                continue;
            }
            if value.is_empty() {
                b.extend_from_slice(&[code, 0]);
            }
            for piece in value.chunks(255) {
                b.extend_from_slice(&[code, piece.len() as u8]);
                b.extend_from_slice(piece);
            }
        }
        b.push(code::END);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, code::PAD);
        }
        b
    }

    /// Reads a UDP payload. Never panics; see [`DecodeError`] for what is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TruncatedHeader { len: bytes.len() });
        }
        let op = match bytes[0] {
            1 => Opcode::BootRequest,
            2 => Opcode::BootReply,
            op => return Err(DecodeError::BadOpcode { op }),
        };
        let hlen = bytes[2];
        if hlen > 16 {
            return Err(DecodeError::BadHardwareLength { hlen });
        }
        let cookie: [u8; 4] = array(bytes, COOKIE);
        if cookie != MAGIC_COOKIE {
            return Err(DecodeError::BadCookie { found: cookie });
        }
        let addr = |at| Ipv4Addr::from(array::<4>(bytes, at));
        let mut options = Options::default();
        // Offset of each option's first code byte, for errors found after concatenation.
        let mut first_at = Vec::new();
        let overload = read_options(
            bytes,
            HEADER_LEN,
            bytes.len(),
            Field::Options,
            &mut options,
            &mut first_at,
        )?;
        // RFC 2131 §4.1 / RFC 3396 §5: options, then file, then sname.
        if let Some((value, offset)) = overload {
            if !(1..=3).contains(&value) {
                return Err(DecodeError::BadOverload { offset, value });
            }
            if value & 1 != 0 {
                read_options(
                    bytes,
                    FILE,
                    COOKIE,
                    Field::File,
                    &mut options,
                    &mut first_at,
                )?;
            }
            if value & 2 != 0 {
                read_options(
                    bytes,
                    SNAME,
                    FILE,
                    Field::Sname,
                    &mut options,
                    &mut first_at,
                )?;
            }
        }
        for ((code, value), offset) in options.entries.iter().zip(&first_at) {
            check(*code, value, *offset)?;
        }
        Ok(Self {
            op,
            htype: bytes[1],
            hlen,
            hops: bytes[3],
            xid: u32::from_be_bytes(array(bytes, 4)),
            secs: u16::from_be_bytes(array(bytes, 8)),
            flags: u16::from_be_bytes(array(bytes, 10)),
            ciaddr: addr(12),
            yiaddr: addr(16),
            siaddr: addr(20),
            giaddr: addr(24),
            chaddr: array(bytes, 28),
            sname: array(bytes, SNAME),
            file: array(bytes, FILE),
            options,
        })
    }
}

/// `N` bytes of `bytes` from `at`; callers have checked the length (HEADER_LEN).
fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

/// Reads the TLVs of `bytes[start..end]` into `options` until END or `end`. Returns the
/// overload option's value and offset if this field has one (only the options field may).
fn read_options(
    bytes: &[u8],
    start: usize,
    end: usize,
    field: Field,
    options: &mut Options,
    first_at: &mut Vec<usize>,
) -> Result<Option<(u8, usize)>, DecodeError> {
    let mut overload = None;
    let mut i = start;
    while i < end {
        let code = bytes[i];
        match code {
            code::PAD => {
                i += 1;
                continue;
            }
            code::END => break,
            _ => {}
        }
        let Some(&len) = bytes.get(i + 1).filter(|_| i + 1 < end) else {
            return Err(DecodeError::MissingLength {
                code,
                offset: i,
                field,
            });
        };
        let value_end = i + 2 + usize::from(len);
        if value_end > end {
            return Err(DecodeError::PastEnd {
                code,
                offset: i,
                len,
                end,
                field,
            });
        }
        let value = &bytes[i + 2..value_end];
        if code == code::OVERLOAD {
            // Only meaningful in the options field; a fixed 1-byte value.
            if field == Field::Options {
                let [v] = value else {
                    return Err(DecodeError::WrongLength {
                        code,
                        name: "option overload",
                        offset: i,
                        len: value.len(),
                        expected: "1",
                    });
                };
                overload = Some((*v, i));
            }
        } else if options.append(code, value) {
            first_at.push(i);
        }
        i = value_end;
    }
    Ok(overload)
}

#[cfg(test)]
mod tests;
