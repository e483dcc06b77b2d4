//! `[network]`: the schema, and its validation into a [`Plan`].
//!
//! Values that need parsing (addresses, prefixes, MACs) are kept as strings in the schema
//! and checked here, one entry at a time, so that a typo in one interface's address costs
//! that interface its static configuration (it falls back to DHCP, the safe default) and
//! not the whole file. Each problem is one line naming the source (file:line or the kernel
//! command line) and the key. Unknown keys are refused by the schema (`deny_unknown_fields`)
//! like everywhere else in `init.toml`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ipconfig::{Autoconf, IpConfig};

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Host name; empty: from `ip=`, else from DHCP, else `berth-<mac>`.
    pub hostname: String,
    /// How long boot waits for the configured interfaces before starting berthd anyway.
    pub wait_secs: u64,
    /// Run DHCP on interfaces no `[[network.interface]]` matches.
    pub dhcp_unmatched: bool,
    /// Send DHCP RELEASE for every lease at power-off and reboot.
    pub release_on_shutdown: bool,
    /// Name servers for every interface, first in `resolv.conf`.
    pub dns: Vec<String>,
    /// Search domains for every interface.
    pub search: Vec<String>,
    /// `[[network.interface]]`: per-interface settings; the first entry that matches wins.
    #[serde(rename = "interface")]
    pub interfaces: Vec<InterfaceConfig>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            hostname: String::new(),
            wait_secs: 10,
            dhcp_unmatched: true,
            release_on_shutdown: true,
            dns: Vec::new(),
            search: Vec::new(),
            interfaces: Vec::new(),
        }
    }
}

/// One `[[network.interface]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceConfig {
    /// An interface name (`eth0`), a glob (`en*`, `eth?`) or a MAC address (`52:54:00:12:34:56`).
    #[serde(rename = "match")]
    pub matcher: String,
    /// Run DHCP; default: true when `addresses` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp: Option<bool>,
    /// Static addresses with prefix length (`10.0.0.5/24`, `fd00::5/64`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Default gateway for the static addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Extra routes.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// MTU (over DHCP's option 26).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Name servers (before DHCP's).
    #[serde(default)]
    pub dns: Vec<String>,
    /// Search domains (before DHCP's).
    #[serde(default)]
    pub search: Vec<String>,
}

/// One `routes` entry: `{ to = "10.1.0.0/16", via = "10.0.0.254" }`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Destination with prefix length; `0.0.0.0/0` or `default` for a default route.
    pub to: String,
    /// Gateway; none for an on-link route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// How an entry picks interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Exact name.
    Name(String),
    /// Shell glob on the name.
    Glob(glob::Pattern),
    /// Hardware address.
    Mac([u8; 6]),
    /// The first non-loopback interface (`ip=` without a device).
    First,
}

impl Matcher {
    /// Reads a `match` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty match".into());
        }
        if let Some(mac) = parse_mac(text) {
            return Ok(Self::Mac(mac));
        }
        if text.contains(['*', '?', '[']) {
            return glob::Pattern::new(text)
                .map(Self::Glob)
                .map_err(|e| format!("invalid glob: {e}"));
        }
        if text.len() >= libc::IFNAMSIZ || text.contains(['/', ' ', ':']) {
            return Err("neither an interface name, a glob nor a MAC address".into());
        }
        Ok(Self::Name(text.to_string()))
    }

    /// Whether the interface `name` with hardware address `mac` matches.
    pub fn matches(&self, name: &str, mac: &[u8], first: bool) -> bool {
        match self {
            Self::Name(n) => n == name,
            Self::Glob(p) => p.matches(name),
            Self::Mac(m) => mac == m,
            Self::First => first,
        }
    }
}

/// `52:54:00:12:34:56` (or with dashes).
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// A route to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination network.
    pub to: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// Gateway, or on-link.
    pub via: Option<IpAddr>,
}

/// What to do on a matching interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfacePlan {
    /// The `match` text (or `ip=`), for messages.
    pub label: String,
    /// Which interfaces.
    pub matcher: Matcher,
    /// Run DHCP.
    pub dhcp: bool,
    /// Static addresses.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Routes (the static gateway becomes a default route here).
    pub routes: Vec<Route>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Name servers.
    pub dns: Vec<IpAddr>,
    /// Search domains.
    pub search: Vec<String>,
    /// NTP servers (from `ip=`'s ntp0).
    pub ntp: Vec<Ipv4Addr>,
    /// DHCP client identifier (from `ip=dhcp,<type>,<value>`).
    pub client_id: Option<Vec<u8>>,
}

impl InterfacePlan {
    /// DHCP and nothing else: the safe default.
    pub fn dhcp(label: &str, matcher: Matcher) -> Self {
        Self {
            label: label.to_string(),
            matcher,
            dhcp: true,
            addresses: Vec::new(),
            routes: Vec::new(),
            mtu: None,
            dns: Vec::new(),
            search: Vec::new(),
            ntp: Vec::new(),
            client_id: None,
        }
    }
}

/// The validated network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Host name from configuration (`[network] hostname`), if valid.
    pub hostname: Option<String>,
    /// Host name from `ip=`.
    pub ip_hostname: Option<String>,
    /// Per-interface plans, first match wins (`ip=` first: the command line is the last layer).
    pub interfaces: Vec<InterfacePlan>,
    /// DHCP on interfaces no plan matches.
    pub dhcp_unmatched: bool,
    /// RELEASE the leases at shutdown.
    pub release_on_shutdown: bool,
    /// Global name servers.
    pub dns: Vec<IpAddr>,
    /// Global search domains.
    pub search: Vec<String>,
    /// How long boot waits.
    pub wait: std::time::Duration,
}

impl Plan {
    /// The plan for interface `name`/`mac` (`first`: it is the first non-loopback
    /// interface), and the index of the entry that matched.
    pub fn for_interface(
        &self,
        name: &str,
        mac: &[u8],
        first: bool,
    ) -> Option<(usize, InterfacePlan)> {
        if let Some((i, p)) = self
            .interfaces
            .iter()
            .enumerate()
            .find(|(_, p)| p.matcher.matches(name, mac, first))
        {
            return Some((i, p.clone()));
        }
        self.dhcp_unmatched.then(|| {
            (
                usize::MAX,
                InterfacePlan::dhcp("default", Matcher::Name(name.to_string())),
            )
        })
    }
}

/// Where the configuration came from, to name sources in messages.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The configuration files that exist, in layer order, with their text.
    pub files: Vec<(PathBuf, String)>,
    /// The kernel command line.
    pub cmdline: String,
}

impl Sources {
    /// The kernel command line and the files of `paths` that can be read (layer order).
    pub fn load(paths: &[&std::path::Path], cmdline: &str) -> Self {
        let files = paths
            .iter()
            .filter_map(|p| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|text| (p.to_path_buf(), text))
            })
            .collect();
        Self {
            files,
            cmdline: cmdline.to_string(),
        }
    }

    /// Where `value` of `key` was set: the kernel command line when a `berth.<key>=`
    /// argument set it, else `file:line` of the first line at or after the `nth` occurrence
    /// of `section` (a header; 0 = anywhere) that holds `value` quoted, in the last layer
    /// that has it; else the last file.
    pub fn locate(&self, key: &str, value: &str, section: Option<(&str, usize)>) -> String {
        let arg = format!("berth.{key}=");
        if let Some(a) = crate::cmdline::split(&self.cmdline)
            .into_iter()
            .rev()
            .find(|a| format!("{}=", a.key) == arg)
        {
            return format!("kernel command line: {}", a.raw);
        }
        let needle = format!("\"{value}\"");
        for (path, text) in self.files.iter().rev() {
            let start = match section {
                Some((header, nth)) => match text.match_indices(header).nth(nth) {
                    Some((i, _)) => i,
                    None => continue,
                },
                None => 0,
            };
            if let Some(offset) = text[start..].find(&needle) {
                let line = text[..start + offset]
                    .bytes()
                    .filter(|&b| b == b'\n')
                    .count()
                    + 1;
                return format!("{}:{line}", path.display());
            }
        }
        match self.files.last() {
            Some((path, _)) => path.display().to_string(),
            None => "built-in configuration".into(),
        }
    }
}

/// `10.0.0.5/24` → (address, 24). A missing prefix is an error: a static address without
/// one is ambiguous.
pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = text
        .split_once('/')
        .ok_or("missing /prefix (e.g. 10.0.0.5/24)")?;
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= max)
        .ok_or_else(|| format!("prefix {prefix:?} is not 0..={max}"))?;
    Ok((addr, prefix))
}

/// A host name the kernel and DNS accept: 1..=64 bytes of letters, digits, `-` and `.`.
pub fn check_hostname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        || name.starts_with(['-', '.'])
    {
        return Err("only letters, digits, '-' and '.' are allowed, not first".into());
    }
    Ok(())
}

fn ip(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not an IP address"))
}

/// Validates `config` (with the kernel's `ip=` when given). Returns the plan and one
/// message per problem, each naming its source and key and saying what happens instead.
pub fn plan(
    config: &NetworkConfig,
    ip_config: Option<&IpConfig>,
    sources: &Sources,
) -> (Plan, Vec<String>) {
    let mut errors = Vec::new();
    let hostname = (!config.hostname.is_empty())
        .then(|| match check_hostname(&config.hostname) {
            Ok(()) => Some(config.hostname.clone()),
            Err(e) => {
                let at = sources.locate("network.hostname", &config.hostname, None);
                errors.push(format!(
                    "{at}: key network.hostname: {:?}: {e}; ignored",
                    config.hostname
                ));
                None
            }
        })
        .flatten();
    let mut dns = Vec::new();
    for (i, text) in config.dns.iter().enumerate() {
        match ip(text) {
            Ok(a) => dns.push(a),
            Err(e) => {
                let at = sources.locate("network.dns", text, None);
                errors.push(format!("{at}: key network.dns[{i}]: {e}; ignored"));
            }
        }
    }
    let mut interfaces = Vec::new();
    if let Some(ipc) = ip_config {
        interfaces.extend(ip_plan(ipc));
    }
    for (n, entry) in config.interfaces.iter().enumerate() {
        let section = Some(("[[network.interface]]", n));
        let key = |field: &str| format!("network.interface[{n}].{field}");
        let matcher = match Matcher::parse(&entry.matcher) {
            Ok(m) => m,
            Err(e) => {
                let at = sources.locate(&key("match"), &entry.matcher, section);
                errors.push(format!(
                    "{at}: key {}: {:?}: {e}; entry ignored",
                    key("match"),
                    entry.matcher
                ));
                continue;
            }
        };
        match entry_plan(entry, matcher.clone(), &key) {
            Ok(plan) => interfaces.push(plan),
            Err((field, value, e)) => {
                let at = sources.locate(&key(&field), &value, section);
                errors.push(format!(
                    "{at}: key {}: {e}; interfaces matching {:?} fall back to DHCP",
                    key(&field),
                    entry.matcher
                ));
                interfaces.push(InterfacePlan::dhcp(&entry.matcher, matcher));
            }
        }
    }
    let plan = Plan {
        hostname,
        ip_hostname: ip_config.and_then(|c| c.hostname.clone()),
        interfaces,
        dhcp_unmatched: config.dhcp_unmatched,
        release_on_shutdown: config.release_on_shutdown,
        dns,
        search: config.search.clone(),
        wait: std::time::Duration::from_secs(config.wait_secs),
    };
    (plan, errors)
}

/// One entry; the error names the field (with index) and the offending value.
fn entry_plan(
    entry: &InterfaceConfig,
    matcher: Matcher,
    _key: &dyn Fn(&str) -> String,
) -> Result<InterfacePlan, (String, String, String)> {
    let mut plan = InterfacePlan::dhcp(&entry.matcher, matcher);
    plan.dhcp = entry.dhcp.unwrap_or(entry.addresses.is_empty());
    for (i, text) in entry.addresses.iter().enumerate() {
        let parsed = parse_cidr(text).map_err(|e| {
            (
                format!("addresses[{i}]"),
                text.clone(),
                format!("{text:?}: {e}"),
            )
        })?;
        plan.addresses.push(parsed);
    }
    if let Some(gw) = &entry.gateway {
        let via = ip(gw).map_err(|e| ("gateway".into(), gw.clone(), e))?;
        let to = if via.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        plan.routes.push(Route {
            to,
            prefix: 0,
            via: Some(via),
        });
    }
    for (i, r) in entry.routes.iter().enumerate() {
        let (to, prefix) = if r.to == "default" {
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
        } else {
            parse_cidr(&r.to).map_err(|e| {
                (
                    format!("routes[{i}].to"),
                    r.to.clone(),
                    format!("{:?}: {e}", r.to),
                )
            })?
        };
        let via = match &r.via {
            Some(v) => Some(ip(v).map_err(|e| (format!("routes[{i}].via"), v.clone(), e))?),
            None => None,
        };
        plan.routes.push(Route { to, prefix, via });
    }
    if let Some(mtu) = entry.mtu {
        if !(68..=65535).contains(&mtu) {
            return Err((
                "mtu".into(),
                mtu.to_string(),
                format!("{mtu} is not 68..=65535"),
            ));
        }
        plan.mtu = Some(mtu);
    }
    for (i, text) in entry.dns.iter().enumerate() {
        plan.dns
            .push(ip(text).map_err(|e| (format!("dns[{i}]"), text.clone(), e))?);
    }
    plan.search = entry.search.clone();
    if !plan.dhcp && plan.addresses.is_empty() {
        return Err((
            "dhcp".into(),
            "false".into(),
            "dhcp = false and no addresses".into(),
        ));
    }
    Ok(plan)
}

/// The kernel's `ip=` as a plan (`None` for `ip=off` with no address).
pub fn ip_plan(ipc: &IpConfig) -> Option<InterfacePlan> {
    let matcher = match &ipc.device {
        Some(dev) => Matcher::Name(dev.clone()),
        None => Matcher::First,
    };
    let label = format!(
        "ip= ({})",
        ipc.device.as_deref().unwrap_or("first interface")
    );
    let mut plan = InterfacePlan::dhcp(&label, matcher);
    plan.client_id = ipc.client_id.as_ref().map(|id| {
        let mut bytes = vec![id.kind];
        bytes.extend_from_slice(id.value.as_bytes());
        bytes
    });
    match ipc.client {
        Some(client) => {
            let prefix = ipc.prefix_len.unwrap_or(match client.octets()[0] {
                0..=127 => 8,
                128..=191 => 16,
                _ => 24,
            });
            plan.dhcp = false;
            plan.addresses.push((IpAddr::V4(client), prefix));
            if let Some(gw) = ipc.gateway {
                plan.routes.push(Route {
                    to: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    prefix: 0,
                    via: Some(IpAddr::V4(gw)),
                });
            }
        }
        None if ipc.autoconf == Some(Autoconf::Off) => return None,
        None => {}
    }
    plan.dns.extend(
        ipc.dns0
            .iter()
            .chain(ipc.dns1.iter())
            .map(|a| IpAddr::V4(*a)),
    );
    plan.ntp.extend(ipc.ntp0);
    Some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> NetworkConfig {
        #[derive(Deserialize)]
        struct Wrapper {
            network: NetworkConfig,
        }
        toml::from_str::<Wrapper>(text).unwrap().network
    }

    fn sources(text: &str, cmdline: &str) -> Sources {
        Sources {
            files: vec![(
                Path::new("/etc/berth/init.toml").to_path_buf(),
                text.to_string(),
            )],
            cmdline: cmdline.into(),
        }
    }

    #[test]
    fn defaults_are_dhcp_everywhere() {
        let (plan, errors) = plan(&NetworkConfig::default(), None, &Sources::default());
        assert!(errors.is_empty());
        let (index, p) = plan.for_interface("eth0", &[0; 6], true).unwrap();
        assert_eq!(index, usize::MAX);
        assert!(p.dhcp && p.addresses.is_empty());
    }

    #[test]
    fn static_entry_with_routes() {
        let text = r#"
[network]
hostname = "edge-7"
dns = ["10.0.0.53"]
[[network.interface]]
match = "eth*"
addresses = ["10.0.0.5/24", "fd00::5/64"]
gateway = "10.0.0.1"
routes = [{ to = "10.1.0.0/16", via = "10.0.0.254" }]
mtu = 1400
dns = ["10.0.0.2"]
search = ["example.test"]
"#;
        let (plan, errors) = plan(&parse(text), None, &sources(text, ""));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(plan.hostname.as_deref(), Some("edge-7"));
        let (_, p) = plan.for_interface("eth1", &[0; 6], false).unwrap();
        assert!(!p.dhcp);
        assert_eq!(
            p.addresses,
            [
                ("10.0.0.5".parse().unwrap(), 24),
                ("fd00::5".parse().unwrap(), 64)
            ]
        );
        assert_eq!(
            p.routes[0],
            Route {
                to: "0.0.0.0".parse().unwrap(),
                prefix: 0,
                via: Some("10.0.0.1".parse().unwrap())
            }
        );
        assert_eq!(
            p.routes[1],
            Route {
                to: "10.1.0.0".parse().unwrap(),
                prefix: 16,
                via: Some("10.0.0.254".parse().unwrap())
            }
        );
        assert_eq!(p.mtu, Some(1400));
        // Unmatched interfaces still get DHCP.
        assert!(plan.for_interface("ens3", &[0; 6], false).unwrap().1.dhcp);
    }

    #[test]
    fn bad_address_names_line_and_key_and_falls_back_to_dhcp() {
        let text = "[network]\n\n[[network.interface]]\nmatch = \"eth0\"\naddresses = [\"10.0.0.5/24\"]\n\n[[network.interface]]\nmatch = \"52:54:00:12:34:56\"\naddresses = [\"10.0.0.300/24\"]\n";
        let (plan, errors) = plan(&parse(text), None, &sources(text, ""));
        assert_eq!(
            errors,
            [
                r#"/etc/berth/init.toml:9: key network.interface[1].addresses[0]: "10.0.0.300/24": "10.0.0.300" is not an IP address; interfaces matching "52:54:00:12:34:56" fall back to DHCP"#
            ]
        );
        let (_, p) = plan
            .for_interface("ens9", &[0x52, 0x54, 0, 0x12, 0x34, 0x56], false)
            .unwrap();
        assert!(p.dhcp && p.addresses.is_empty());
        assert!(!plan.for_interface("eth0", &[0; 6], false).unwrap().1.dhcp);
    }

    #[test]
    fn bad_prefix_gateway_and_match_are_reported() {
        let text = "[[network.interface]]\nmatch = \"eth0\"\naddresses = [\"10.0.0.5/33\"]\n[[network.interface]]\nmatch = \"eth1\"\naddresses = [\"10.0.0.5\"]\n[[network.interface]]\nmatch = \"eth2\"\naddresses = [\"10.0.0.5/8\"]\ngateway = \"gw\"\n[[network.interface]]\nmatch = \"a/b\"\n";
        let (_, errors) = plan(&parse(text), None, &sources(text, ""));
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "/etc/berth/init.toml:3: key network.interface[0].addresses[0]: \"10.0.0.5/33\": prefix \"33\""
            ),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].contains(
                ":6: key network.interface[1].addresses[0]: \"10.0.0.5\": missing /prefix"
            ),
            "{}",
            errors[1]
        );
        assert!(
            errors[2]
                .contains(":10: key network.interface[2].gateway: \"gw\" is not an IP address"),
            "{}",
            errors[2]
        );
        assert!(
            errors[3].contains(":12: key network.interface[3].match: \"a/b\""),
            "{}",
            errors[3]
        );
    }

    #[test]
    fn bad_hostname_from_the_command_line_names_it() {
        let config = NetworkConfig {
            hostname: "bad_name!".into(),
            ..NetworkConfig::default()
        };
        let (plan, errors) = plan(
            &config,
            None,
            &sources("", "quiet berth.network.hostname=bad_name!"),
        );
        assert!(plan.hostname.is_none());
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "kernel command line: berth.network.hostname=bad_name!: key network.hostname"
            ),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn matchers() {
        assert_eq!(
            Matcher::parse("eth0").unwrap(),
            Matcher::Name("eth0".into())
        );
        assert!(Matcher::parse("en*").unwrap().matches("ens3", &[], false));
        assert!(!Matcher::parse("en*").unwrap().matches("eth0", &[], false));
        let mac = Matcher::parse("52:54:00:AB:cd:01").unwrap();
        assert!(mac.matches("x", &[0x52, 0x54, 0, 0xab, 0xcd, 1], false));
        assert!(Matcher::parse("").is_err());
        assert!(Matcher::parse("waytoolonginterfacename").is_err());
    }

    #[test]
    fn ip_argument_static_and_dhcp() {
        let ipc = crate::ipconfig::parse(
            "10.0.2.50::10.0.2.2:255.255.255.0:pxe-node:eth0:off:10.0.2.3::10.0.2.2",
        )
        .unwrap();
        let (plan, errors) = plan(&NetworkConfig::default(), Some(&ipc), &Sources::default());
        assert!(errors.is_empty());
        assert_eq!(plan.ip_hostname.as_deref(), Some("pxe-node"));
        let (index, p) = plan.for_interface("eth0", &[], true).unwrap();
        assert_eq!(index, 0);
        assert!(!p.dhcp);
        assert_eq!(p.addresses, [("10.0.2.50".parse().unwrap(), 24)]);
        assert_eq!(p.routes[0].via, Some("10.0.2.2".parse().unwrap()));
        assert_eq!(p.dns, ["10.0.2.3".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.ntp, [Ipv4Addr::new(10, 0, 2, 2)]);

        let ipc = crate::ipconfig::parse("dhcp").unwrap();
        let p = ip_plan(&ipc).unwrap();
        assert!(p.dhcp && p.matcher == Matcher::First);
        let ipc = crate::ipconfig::parse("eth1:dhcp").unwrap();
        assert_eq!(ip_plan(&ipc).unwrap().matcher, Matcher::Name("eth1".into()));
        assert!(ip_plan(&crate::ipconfig::parse("off").unwrap()).is_none());
    }
}
