//! Helpers shared by berth's host tests and QEMU scenarios, in one crate instead of test
//! files included into other crates by `#[path]`:
//!
//! - [`support`]: OCI layers, manifests and archives built in memory (busybox images too),
//!   and berthd/berthctl as child processes of a test ([`bin`] finds them);
//! - [`host`]: running host tools, a containerd of the test's own (the differential oracle and
//!   benchmark peer), statistics for benchmarks;
//! - [`registry`]: a real `docker-registry` on loopback and pushes to it with skopeo;
//! - [`pty`]: a program driven through a real pseudo-terminal (`berthctl run -it`).
//! - [`cri_images`]: local equivalents of the public images critest hard-codes.

pub mod cri_images;
pub mod host;
pub mod pty;
pub mod registry;
pub mod support;

use std::path::PathBuf;

/// The path of the workspace binary `name` (`berthd`, `berthctl`, …) built beside the running
/// test: integration tests of the `berth` crate run from `target/<profile>/deps/`, and cargo
/// builds that crate's binaries into `target/<profile>/` before it runs them.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the test through cargo in the `berth` crate, which builds it",
        path.display()
    );
    path
}
