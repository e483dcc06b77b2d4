//! The one place that says which scenarios hold a host resource no other scenario may use at
//! the same time. Everything not listed here runs alongside anything else.
//!
//! What the scenarios share without clashing (checked when the runner was written, and what a
//! new scenario should keep to): every VM has its own scratch directory and sockets
//! (`tempfile`), user networks are per QEMU process (the guest-side `10.0.2.2:5000` of
//! `registry.rs` and `zfs.rs` is a `guestfwd`, not a host port), host listeners bind port 0
//! (registry, HTTP server, SNTP and syslog listeners), network namespaces and tap devices are
//! named after the test's pid (`network.rs` `TapNet`), and image variants build into their
//! own directories from the read-only kernel and package cache that `make image-test` filled.
//! A scenario that needs a fixed host port, a fixed name (namespace, bridge, tap, `/tmp`
//! path), host-wide iptables rules or the whole machine must be listed here with the reason.

/// A scenario (matched by `binary::test` prefix) and the host resource it holds exclusively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusive {
    /// `binary::test`, or a prefix of it (`binary::` for a whole file).
    pub test: &'static str,
    /// The resource; scenarios naming the same resource never overlap.
    pub resource: &'static str,
    /// Why it cannot be shared.
    pub why: &'static str,
}

/// The table.
pub const EXCLUSIVE: &[Exclusive] = &[Exclusive {
    test: "network::resolves_a_name_only_the_host_resolver_knows",
    resource: "127.0.0.1:53",
    why: "dnsmasq answers the guest's DNS on the host's port 53 (the user network forwards \
          the guest's queries to .2 only on that port)",
}];

/// The resources `test` (`binary::test`) holds.
pub fn resources_of(test: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = EXCLUSIVE
        .iter()
        .filter(|e| test.starts_with(e.test))
        .map(|e| e.resource)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_tests() {
        assert_eq!(
            resources_of("network::resolves_a_name_only_the_host_resolver_knows"),
            ["127.0.0.1:53"]
        );
        assert!(resources_of("network::dhcp_on_a_random_user_network").is_empty());
    }

    #[test]
    fn every_entry_says_why() {
        for e in EXCLUSIVE {
            assert!(e.test.contains("::"), "{e:?}: name binary::test");
            assert!(!e.resource.is_empty() && e.why.len() > 20, "{e:?}");
        }
    }
}
