//! The kernel's `ip=` argument (`Documentation/admin-guide/nfs/nfsroot.rst`), parsed into a
//! typed [`IpConfig`] so a PXE-booted node can be configured the way boot loaders and DHCP
//! servers already describe it. Not used by networking yet.
//!
//! Accepted forms:
//! - `ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>`,
//!   any field empty, trailing fields may be left out;
//! - `ip=<autoconf>` alone: `off`, `none`, `on`, `any`, `dhcp`, `bootp`, `rarp`, `both`, and
//!   `dhcp,<client-id-type>,<client-id-value>`;
//! - `ip=<device>:<autoconf>` (dracut's short form, e.g. `ip=eth0:dhcp`).
//!
//! As in the kernel (`net/ipv4/ipconfig.c`), an address field of `0.0.0.0` counts as empty.
//! Unlike the kernel, which skips what it cannot read, every bad field is an error naming it:
//! `ip=: field 4 (netmask) "255.0.255.0": not a contiguous netmask`.

use std::fmt;
use std::net::Ipv4Addr;

/// The field names, 1-based position = index + 1, as in the kernel documentation.
const FIELDS: [&str; 10] = [
    "client-ip",
    "server-ip",
    "gw-ip",
    "netmask",
    "hostname",
    "device",
    "autoconf",
    "dns0-ip",
    "dns1-ip",
    "ntp0-ip",
];

/// Longest host name the kernel keeps (`__NEW_UTS_LEN`).
const MAX_HOSTNAME: usize = 64;
/// Longest interface name (`IFNAMSIZ` - 1).
const MAX_DEVICE: usize = 15;

/// How addresses not given statically are obtained (`<autoconf>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autoconf {
    /// `off` or `none`: static configuration only.
    Off,
    /// `on` or `any`: any protocol (the kernel's default).
    Any,
    /// `dhcp`.
    Dhcp,
    /// `bootp`.
    Bootp,
    /// `rarp`.
    Rarp,
    /// `both`: BOOTP and RARP but not DHCP.
    Both,
}

impl Autoconf {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "off" | "none" => Self::Off,
            "on" | "any" => Self::Any,
            "dhcp" => Self::Dhcp,
            "bootp" => Self::Bootp,
            "rarp" => Self::Rarp,
            "both" => Self::Both,
            _ => return None,
        })
    }
}

/// `dhcp,<client-id-type>,<client-id-value>`: the DHCP client identifier (option 61) to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId {
    /// The type byte (0 for an opaque string, 1 for an Ethernet address, …).
    pub kind: u8,
    /// The identifier, as written.
    pub value: String,
}

/// A parsed `ip=` value. `None` means the field was empty (or `0.0.0.0`): determined by
/// autoconfiguration, or absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpConfig {
    /// `<client-ip>`.
    pub client: Option<Ipv4Addr>,
    /// `<server-ip>` (the boot server).
    pub server: Option<Ipv4Addr>,
    /// `<gw-ip>`.
    pub gateway: Option<Ipv4Addr>,
    /// `<netmask>`, checked to be contiguous.
    pub netmask: Option<Ipv4Addr>,
    /// The prefix length of `netmask` (`255.255.255.0` → 24).
    pub prefix_len: Option<u8>,
    /// `<hostname>` (at most 64 bytes).
    pub hostname: Option<String>,
    /// `<device>` (an interface name, at most 15 bytes).
    pub device: Option<String>,
    /// `<autoconf>`; `None` when empty, which the kernel treats as `any` for whatever the
    /// static fields leave open.
    pub autoconf: Option<Autoconf>,
    /// From `dhcp,<type>,<value>`.
    pub client_id: Option<ClientId>,
    /// `<dns0-ip>`.
    pub dns0: Option<Ipv4Addr>,
    /// `<dns1-ip>`.
    pub dns1: Option<Ipv4Addr>,
    /// `<ntp0-ip>`.
    pub ntp0: Option<Ipv4Addr>,
}

/// A bad `ip=` value, naming the field when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpError {
    /// 1-based field number, when the error is about one field.
    pub field: Option<usize>,
    /// The offending text.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for IpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(n) => write!(
                f,
                "ip=: field {n} ({}) {:?}: {}",
                FIELDS[n - 1],
                self.text,
                self.reason
            ),
            None => write!(f, "ip=: {:?}: {}", self.text, self.reason),
        }
    }
}

impl std::error::Error for IpError {}

const AUTOCONF_NAMES: &str = "off, none, on, any, dhcp, bootp, rarp or both";

/// Parses the value of an `ip=` argument (without `ip=`).
pub fn parse(value: &str) -> Result<IpConfig, IpError> {
    let whole = |reason: String| IpError {
        field: None,
        text: value.to_string(),
        reason,
    };
    // The kernel tries the whole value as a method first (a client id may contain colons).
    if let Some((autoconf, client_id)) = parse_autoconf(value).map_err(whole)? {
        return Ok(IpConfig {
            autoconf: Some(autoconf),
            client_id,
            ..IpConfig::default()
        });
    }
    if !value.contains(':') && !value.is_empty() && value.parse::<Ipv4Addr>().is_err() {
        return Err(whole(format!(
            "neither an autoconf method ({AUTOCONF_NAMES}) nor an IPv4 address"
        )));
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > FIELDS.len() {
        return Err(whole(format!(
            "{} fields, at most {}",
            fields.len(),
            FIELDS.len()
        )));
    }
    // dracut's `<device>:<autoconf>`.
    if let [device, method] = fields[..] {
        if !device.is_empty() && device.parse::<Ipv4Addr>().is_err() {
            if let Ok(Some((autoconf, client_id))) = parse_autoconf(method) {
                let device =
                    check_device(device).map_err(|reason| field_error(6, device, reason))?;
                return Ok(IpConfig {
                    device: Some(device),
                    autoconf: Some(autoconf),
                    client_id,
                    ..IpConfig::default()
                });
            }
        }
    }
    let mut config = IpConfig::default();
    for (index, text) in fields.iter().copied().enumerate() {
        let n = index + 1;
        if text.is_empty() {
            continue;
        }
        let err = |reason: String| field_error(n, text, reason);
        match n {
            1 => config.client = address(text).map_err(err)?,
            2 => config.server = address(text).map_err(err)?,
            3 => config.gateway = address(text).map_err(err)?,
            4 => {
                config.netmask = address(text).map_err(err)?;
                config.prefix_len = config.netmask.map(prefix_len).transpose().map_err(err)?;
            }
            5 => {
                if text.len() > MAX_HOSTNAME {
                    return Err(err(format!("longer than {MAX_HOSTNAME} bytes")));
                }
                config.hostname = Some(text.to_string());
            }
            6 => config.device = Some(check_device(text).map_err(err)?),
            7 => match parse_autoconf(text).map_err(err)? {
                Some((autoconf, client_id)) => {
                    config.autoconf = Some(autoconf);
                    config.client_id = client_id;
                }
                None => {
                    return Err(err(format!(
                        "unknown autoconf method, expected {AUTOCONF_NAMES}"
                    )))
                }
            },
            8 => config.dns0 = address(text).map_err(err)?,
            9 => config.dns1 = address(text).map_err(err)?,
            _ => config.ntp0 = address(text).map_err(err)?,
        }
    }
    Ok(config)
}

fn field_error(n: usize, text: &str, reason: String) -> IpError {
    IpError {
        field: Some(n),
        text: text.to_string(),
        reason,
    }
}

/// An autoconf name, or `dhcp,<type>,<value>`; `Ok(None)` if it is not one at all.
fn parse_autoconf(text: &str) -> Result<Option<(Autoconf, Option<ClientId>)>, String> {
    if let Some(rest) = text.strip_prefix("dhcp,") {
        let Some((kind, value)) = rest.split_once(',') else {
            return Err("expected dhcp,<client-id-type>,<client-id-value>".into());
        };
        let kind = kind
            .parse::<u8>()
            .map_err(|_| format!("client-id-type {kind:?} is not a number from 0 to 255"))?;
        if value.is_empty() {
            return Err("empty client-id-value".into());
        }
        return Ok(Some((
            Autoconf::Dhcp,
            Some(ClientId {
                kind,
                value: value.to_string(),
            }),
        )));
    }
    Ok(Autoconf::from_name(text).map(|autoconf| (autoconf, None)))
}

/// An IPv4 address field; `0.0.0.0` means unset, as in the kernel.
fn address(text: &str) -> Result<Option<Ipv4Addr>, String> {
    let addr = text
        .parse::<Ipv4Addr>()
        .map_err(|_| "not an IPv4 address".to_string())?;
    Ok((!addr.is_unspecified()).then_some(addr))
}

/// The prefix length of a contiguous netmask (ones, then only zeros).
fn prefix_len(mask: Ipv4Addr) -> Result<u8, String> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    if bits.checked_shl(ones).unwrap_or(0) != 0 {
        return Err("not a contiguous netmask".into());
    }
    Ok(ones as u8)
}

fn check_device(text: &str) -> Result<String, String> {
    if text.len() > MAX_DEVICE {
        return Err(format!("longer than {MAX_DEVICE} bytes"));
    }
    if text == "."
        || text == ".."
        || text.contains(['/', ','])
        || text.chars().any(char::is_whitespace)
    {
        return Err("not an interface name".into());
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<Ipv4Addr> {
        Some(s.parse().unwrap())
    }

    fn auto(autoconf: Autoconf) -> IpConfig {
        IpConfig {
            autoconf: Some(autoconf),
            ..IpConfig::default()
        }
    }

    #[test]
    fn autoconf_alone() {
        let cases = [
            ("dhcp", Autoconf::Dhcp),
            ("on", Autoconf::Any),
            ("any", Autoconf::Any),
            ("both", Autoconf::Both),
            ("bootp", Autoconf::Bootp),
            ("rarp", Autoconf::Rarp),
            ("off", Autoconf::Off),
            ("none", Autoconf::Off),
        ];
        for (value, want) in cases {
            assert_eq!(parse(value), Ok(auto(want)), "{value}");
        }
    }

    #[test]
    fn dhcp_client_id() {
        let want = IpConfig {
            autoconf: Some(Autoconf::Dhcp),
            client_id: Some(ClientId {
                kind: 1,
                value: "00:11:22:33:44:55".into(),
            }),
            ..IpConfig::default()
        };
        // The value may itself contain colons: the whole-value form wins.
        assert_eq!(
            parse("dhcp,1,00:11:22:33:44:55").map(|c| c.client_id),
            Ok(want.client_id.clone())
        );
        assert_eq!(
            parse("dhcp,0,node-7"),
            Ok(IpConfig {
                client_id: Some(ClientId {
                    kind: 0,
                    value: "node-7".into()
                }),
                ..want
            })
        );
    }

    #[test]
    fn full_and_partial_forms() {
        let full = parse("10.0.2.15:10.0.2.2:10.0.2.1:255.255.255.0:node1.example:eth0:off:10.0.2.3:8.8.8.8:10.0.2.4");
        assert_eq!(
            full,
            Ok(IpConfig {
                client: ip("10.0.2.15"),
                server: ip("10.0.2.2"),
                gateway: ip("10.0.2.1"),
                netmask: ip("255.255.255.0"),
                prefix_len: Some(24),
                hostname: Some("node1.example".into()),
                device: Some("eth0".into()),
                autoconf: Some(Autoconf::Off),
                client_id: None,
                dns0: ip("10.0.2.3"),
                dns1: ip("8.8.8.8"),
                ntp0: ip("10.0.2.4"),
            })
        );
        let cases: Vec<(&str, IpConfig)> = vec![
            ("", IpConfig::default()),
            (
                "10.0.0.5",
                IpConfig {
                    client: ip("10.0.0.5"),
                    ..IpConfig::default()
                },
            ),
            (
                "10.0.0.5::10.0.0.1:255.255.0.0",
                IpConfig {
                    client: ip("10.0.0.5"),
                    gateway: ip("10.0.0.1"),
                    netmask: ip("255.255.0.0"),
                    prefix_len: Some(16),
                    ..IpConfig::default()
                },
            ),
            ("::::::dhcp", auto(Autoconf::Dhcp)),
            (
                ":::::eth1:dhcp",
                IpConfig {
                    device: Some("eth1".into()),
                    ..auto(Autoconf::Dhcp)
                },
            ),
            (
                "::::myhost::any",
                IpConfig {
                    hostname: Some("myhost".into()),
                    ..auto(Autoconf::Any)
                },
            ),
            ("0.0.0.0:0.0.0.0::0.0.0.0", IpConfig::default()),
            (
                "10.1.1.1:::255.255.255.255",
                IpConfig {
                    client: ip("10.1.1.1"),
                    netmask: ip("255.255.255.255"),
                    prefix_len: Some(32),
                    ..IpConfig::default()
                },
            ),
            (
                "10.1.1.1:::128.0.0.0",
                IpConfig {
                    client: ip("10.1.1.1"),
                    netmask: ip("128.0.0.0"),
                    prefix_len: Some(1),
                    ..IpConfig::default()
                },
            ),
            (
                ":::::::1.1.1.1",
                IpConfig {
                    dns0: ip("1.1.1.1"),
                    ..IpConfig::default()
                },
            ),
            (
                "10.0.0.2:::::::::",
                IpConfig {
                    client: ip("10.0.0.2"),
                    ..IpConfig::default()
                },
            ),
        ];
        for (value, want) in cases {
            assert_eq!(parse(value), Ok(want), "{value}");
        }
    }

    #[test]
    fn device_and_method() {
        assert_eq!(
            parse("eth0:dhcp"),
            Ok(IpConfig {
                device: Some("eth0".into()),
                ..auto(Autoconf::Dhcp)
            })
        );
        assert_eq!(
            parse("enp0s3:off"),
            Ok(IpConfig {
                device: Some("enp0s3".into()),
                ..auto(Autoconf::Off)
            })
        );
        // An address first is the nfsroot form: "dhcp" is then a bad server address.
        assert_eq!(
            parse("10.0.0.1:dhcp").unwrap_err().to_string(),
            "ip=: field 2 (server-ip) \"dhcp\": not an IPv4 address"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("10.0.0.2::10.0.0.1:255.0.255.0", "ip=: field 4 (netmask) \"255.0.255.0\": not a contiguous netmask"),
            ("10.0.0.2:::0.255.255.255", "ip=: field 4 (netmask) \"0.255.255.255\": not a contiguous netmask"),
            ("10.0.0.2:::255.255.255.1", "ip=: field 4 (netmask) \"255.255.255.1\": not a contiguous netmask"),
            ("10.0.0.2:::24", "ip=: field 4 (netmask) \"24\": not an IPv4 address"),
            ("10.0.0.300", "ip=: \"10.0.0.300\": neither an autoconf method (off, none, on, any, dhcp, bootp, rarp or both) nor an IPv4 address"),
            ("10.0.0.300:", "ip=: field 1 (client-ip) \"10.0.0.300\": not an IPv4 address"),
            ("DHCP", "ip=: \"DHCP\": neither an autoconf method (off, none, on, any, dhcp, bootp, rarp or both) nor an IPv4 address"),
            (":x", "ip=: field 2 (server-ip) \"x\": not an IPv4 address"),
            ("::gw", "ip=: field 3 (gw-ip) \"gw\": not an IPv4 address"),
            ("::::::auto", "ip=: field 7 (autoconf) \"auto\": unknown autoconf method, expected off, none, on, any, dhcp, bootp, rarp or both"),
            (":::::a/b", "ip=: field 6 (device) \"a/b\": not an interface name"),
            (":::::averyveryverylongname0", "ip=: field 6 (device) \"averyveryverylongname0\": longer than 15 bytes"),
            (":::::::1.1.1", "ip=: field 8 (dns0-ip) \"1.1.1\": not an IPv4 address"),
            ("::::::::x", "ip=: field 9 (dns1-ip) \"x\": not an IPv4 address"),
            (":::::::::x", "ip=: field 10 (ntp0-ip) \"x\": not an IPv4 address"),
            ("::::::::::", "ip=: \"::::::::::\": 11 fields, at most 10"),
            ("dhcp,x,abc", "ip=: \"dhcp,x,abc\": client-id-type \"x\" is not a number from 0 to 255"),
            ("dhcp,1", "ip=: \"dhcp,1\": expected dhcp,<client-id-type>,<client-id-value>"),
            ("dhcp,1,", "ip=: \"dhcp,1,\": empty client-id-value"),
            ("::::::dhcp,300,x", "ip=: field 7 (autoconf) \"dhcp,300,x\": client-id-type \"300\" is not a number from 0 to 255"),
        ];
        for (value, want) in cases {
            assert_eq!(parse(value).unwrap_err().to_string(), want, "{value}");
        }
        let long = "h".repeat(65);
        assert_eq!(
            parse(&format!("::::{long}")).unwrap_err().to_string(),
            format!("ip=: field 5 (hostname) \"{long}\": longer than 64 bytes")
        );
        assert!(parse(&format!("::::{}", "h".repeat(64))).is_ok());
    }

    #[test]
    fn every_contiguous_mask_has_its_prefix() {
        for len in 0..=32u32 {
            let mask = Ipv4Addr::from(u32::MAX.checked_shl(32 - len).unwrap_or(0));
            assert_eq!(prefix_len(mask), Ok(len as u8), "{mask}");
        }
    }
}
