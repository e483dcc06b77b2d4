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
//!
//! Besides the table, two rules by kind of job: every scenario claims the release binaries
//! (shared), and host test binaries run one at a time ([`claims_of`]).

use super::schedule::Claim;

/// A test (matched by name prefix) and the host resource it holds exclusively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exclusive {
    /// A job name or a prefix of one: `binary::test` for a scenario (`binary::` for a whole
    /// file), `<package> tests/<binary>.rs` for a host test binary.
    pub test: &'static str,
    /// The resource; jobs claiming the same resource never overlap.
    pub resource: &'static str,
    /// Why it cannot be shared.
    pub why: &'static str,
}

/// The static binaries in `target/x86_64-unknown-linux-gnu/release` (berthctl, berth-image):
/// every scenario uses them (shared claim).
pub const RELEASE_BINARIES: &str = "the release binaries";

/// Host test binaries run one at a time, as `cargo test` runs them: some share fixed names
/// (cgroups, scratch paths) with each other, and several use both cores themselves.
pub const HOST_TEST_BINARIES: &str = "host test binaries";

/// The table.
pub const EXCLUSIVE: &[Exclusive] = &[
    Exclusive {
        test: "network::resolves_a_name_only_the_host_resolver_knows",
        resource: "127.0.0.1:53",
        why: "dnsmasq answers the guest's DNS on the host's port 53 (the user network forwards \
              the guest's queries to .2 only on that port)",
    },
    Exclusive {
        test: "berth-image tests/reproducible.rs",
        resource: RELEASE_BINARIES,
        why: "moves the workspace's release artefacts aside while its second checkout builds \
              in the same target directory (its `Stash`), so berthctl and berth-image are \
              missing meanwhile; its cargo build keeps both cores busy anyway",
    },
];

/// What a job is, for the claims every job of its kind makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// One QEMU scenario (one test of an integration test binary).
    Scenario,
    /// A whole test binary (host tests; unit tests).
    Binary,
}

/// Everything job `name` claims: its rows of [`EXCLUSIVE`] (exclusive), and by kind
/// [`RELEASE_BINARIES`] (scenarios, shared) or [`HOST_TEST_BINARIES`] (whole binaries,
/// exclusive).
pub fn claims_of(name: &str, kind: JobKind) -> Vec<Claim> {
    let mut out: Vec<Claim> = EXCLUSIVE
        .iter()
        .filter(|e| name.starts_with(e.test))
        .map(|e| Claim::exclusive(e.resource))
        .collect();
    let by_kind = match kind {
        JobKind::Scenario => Claim::shared(RELEASE_BINARIES),
        JobKind::Binary => Claim::exclusive(HOST_TEST_BINARIES),
    };
    if !out.iter().any(|c| c.resource == by_kind.resource) {
        out.push(by_kind);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_come_from_the_table_and_the_kind() {
        let names = |claims: Vec<Claim>| {
            claims
                .into_iter()
                .map(|c| format!("{}{}", c.resource, if c.exclusive { "" } else { "?" }))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(claims_of(
                "network::resolves_a_name_only_the_host_resolver_knows",
                JobKind::Scenario
            )),
            ["127.0.0.1:53", "the release binaries?"]
        );
        assert_eq!(
            names(claims_of(
                "network::dhcp_on_a_random_user_network",
                JobKind::Scenario
            )),
            ["the release binaries?"]
        );
        assert_eq!(
            names(claims_of(
                "berth-image tests/reproducible.rs",
                JobKind::Binary
            )),
            ["host test binaries", "the release binaries"]
        );
        assert_eq!(
            names(claims_of("berth tests/storage.rs", JobKind::Binary)),
            ["host test binaries"]
        );
    }

    #[test]
    fn every_entry_says_why() {
        for e in EXCLUSIVE {
            assert!(e.test.contains("::") || e.test.contains(" tests/"), "{e:?}");
            assert!(!e.resource.is_empty() && e.why.len() > 20, "{e:?}");
        }
    }
}
