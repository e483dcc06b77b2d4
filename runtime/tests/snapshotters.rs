//! The snapshotter conformance suite against overlayfs and native on this host (as root; the
//! cases that mount or chown are skipped, visibly, otherwise).

use std::path::Path;

use berth_runtime::snapshots::testsuite::{self, Capabilities, Factory, Outcome};
use berth_runtime::snapshots::{native::Native, overlay::Overlay, Snapshotter};

fn run(name: &str, factory: &Factory<'_>, caps: Capabilities) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "NOTE {name}: not root, so cases that mount snapshots or change owners are skipped"
        );
    }
    let work = tempfile::tempdir().expect("temp dir");
    let report = testsuite::run(name, factory, caps, work.path());
    eprintln!("{report}");
    let failed: Vec<String> = report
        .failed()
        .iter()
        .map(|c| match &c.outcome {
            Outcome::Failed(why) => format!("{}: {why}", c.name),
            _ => unreachable!(),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: {} case(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn overlayfs_conformance() {
    if let Some(why) = berth_runtime::snapshots::overlay::unsupported_reason() {
        eprintln!("SKIP overlayfs_conformance: {why}");
        return;
    }
    let factory = |root: &Path| -> berth_runtime::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Overlay::open(root)?))
    };
    run("overlayfs", &factory, Overlay::suite_capabilities());
}

#[test]
fn native_conformance() {
    let factory = |root: &Path| -> berth_runtime::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Native::open(root)?))
    };
    run("native", &factory, Native::suite_capabilities());
}
