//! Planned crash points for crash-safety tests.
//!
//! Storage code calls [`hit`] with a stable name at the moments a crash is most dangerous (an
//! ingest half written, a blob renamed but not recorded, a layer half unpacked, a metadata
//! transaction about to commit, a GC sweep half done). When the environment variable
//! `BERTH_FAILPOINT` names that point, the process kills itself with SIGKILL there — no
//! destructors, no flushes, exactly like a power cut or an OOM kill — so a test can restart
//! berthd and check that nothing half-done is visible.
//!
//! Syntax: `BERTH_FAILPOINT=<name>` (first hit) or `<name>@<n>` (n-th hit, 1-based). Unset
//! (production) costs one relaxed atomic load per call after the first.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the armed point.
pub const ENV: &str = "BERTH_FAILPOINT";

/// Every point storage code may hit, for tests to iterate over and docs to list.
pub const POINTS: &[&str] = &[
    "content.write.chunk",
    "content.commit.before_rename",
    "content.commit.after_rename",
    "unpack.layer.entry",
    "unpack.layer.before_commit",
    "metadata.before_commit",
    "gc.sweep.record",
    "gc.sweep.blob",
    // A shim dying after the executor created its container, before it reports: berthd must
    // end the orphaned init and remove its cgroups (tasks::lifecycle).
    "shim.after_create",
];

struct Armed {
    name: String,
    at: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, at) = parse(&spec)?;
            Some(Armed {
                name: name.to_string(),
                at,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Parses a `BERTH_FAILPOINT` value into (name, n-th hit); `None` when malformed.
pub fn parse(spec: &str) -> Option<(&str, u64)> {
    match spec.split_once('@') {
        Some((name, n)) => Some((name, n.parse().ok().filter(|n| *n >= 1)?)),
        None => Some((spec, 1)),
    }
}

/// Crashes the process (SIGKILL) if `name` is the armed point and this is its armed hit.
pub fn hit(name: &str) {
    let Some(armed) = armed() else { return };
    if armed.name != name {
        return;
    }
    let count = armed.seen.fetch_add(1, Ordering::Relaxed) + 1;
    if count == armed.at {
        eprintln!("berth: failpoint {name}@{count}: killing myself");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
        // SIGKILL is not deliverable late; but never continue past a planned crash.
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            parse("content.commit.before_rename"),
            Some(("content.commit.before_rename", 1))
        );
        assert_eq!(
            parse("unpack.layer.entry@17"),
            Some(("unpack.layer.entry", 17))
        );
        assert_eq!(parse("x@0"), None);
        assert_eq!(parse("x@y"), None);
    }

    #[test]
    fn unarmed_points_do_nothing() {
        // The test process has no BERTH_FAILPOINT (or one naming nothing we hit here).
        for point in POINTS {
            if std::env::var(ENV).ok().as_deref() != Some(point) {
                hit(point);
            }
        }
    }
}
