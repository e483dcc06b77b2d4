//! The snapshotter conformance suite against overlayfs and native on this host (as root; the
//! cases that mount or chown are skipped, visibly, otherwise).

use std::path::Path;

use berth_engine::snapshots::testsuite::{self, Capabilities, Factory, Outcome};
use berth_engine::snapshots::{
    native::Native, overlay::Overlay, Info, Labels, Mount, Result, Snapshotter, Usage,
};

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
    if let Some(why) = berth_engine::snapshots::overlay::unsupported_reason() {
        eprintln!("SKIP overlayfs_conformance: {why}");
        return;
    }
    let factory = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Overlay::open(root)?))
    };
    run("overlayfs", &factory, Overlay::suite_capabilities());
}

#[test]
fn native_conformance() {
    let factory = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Native::open(root)?))
    };
    run("native", &factory, Native::suite_capabilities());
}

/// Without the mount and chown capabilities (an unprivileged run), the cases that need them
/// are reported as skipped with the reason, and the others still pass.
#[test]
fn without_mount_capability_cases_skip_visibly() {
    let factory = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Native::open(root)?))
    };
    let caps = Capabilities {
        mounts: false,
        chown: false,
        ..Native::suite_capabilities()
    };
    let work = tempfile::tempdir().expect("temp dir");
    let report = testsuite::run("native-unprivileged", &factory, caps, work.path());
    eprintln!("{report}");
    assert!(report.is_success(), "{report}");
    let skipped: Vec<&str> = report
        .cases
        .iter()
        .filter(|c| matches!(&c.outcome, Outcome::Skipped(why) if why.contains("capability")))
        .map(|c| c.name)
        .collect();
    for name in ["Basic", "128LayersMount", "Chown", "ViewReadonly"] {
        assert!(skipped.contains(&name), "{name} not skipped: {report}");
    }
    for name in ["Update", "Walk", "Remove", "ErrorCodes"] {
        assert!(!skipped.contains(&name), "{name} skipped: {report}");
    }
}

/// A snapshotter that breaks the contract in two ways: its views are writable and its walk
/// ignores filters. The suite must catch both (it is not a suite that cannot fail).
struct Broken(Native);

impl Snapshotter for Broken {
    fn stat(&self, key: &str) -> Result<Info> {
        self.0.stat(key)
    }
    fn update(&self, info: &Info, fieldpaths: &[&str]) -> Result<Info> {
        self.0.update(info, fieldpaths)
    }
    fn usage(&self, key: &str) -> Result<Usage> {
        self.0.usage(key)
    }
    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        self.0.mounts(key)
    }
    fn prepare(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        self.0.prepare(key, parent, labels)
    }
    fn view(&self, key: &str, parent: &str, labels: Labels) -> Result<Vec<Mount>> {
        let mut m = self.0.view(key, parent, labels)?;
        for o in m.iter_mut().flat_map(|m| m.options.iter_mut()) {
            if o == "ro" {
                *o = "rw".into();
            }
        }
        Ok(m)
    }
    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        self.0.commit(name, key, labels)
    }
    fn remove(&self, key: &str) -> Result<()> {
        self.0.remove(key)
    }
    fn walk(&self, _filters: &[&str], f: &mut dyn FnMut(&Info) -> Result<()>) -> Result<()> {
        self.0.walk(&[], f)
    }
    fn cleanup(&self) -> Result<()> {
        self.0.cleanup()
    }
    fn close(&self) -> Result<()> {
        self.0.close()
    }
}

#[test]
fn suite_catches_a_broken_snapshotter() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP suite_catches_a_broken_snapshotter: needs root to mount views");
        return;
    }
    let factory = |root: &Path| -> berth_engine::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Broken(Native::open(root)?)))
    };
    let work = tempfile::tempdir().expect("temp dir");
    let report = testsuite::run(
        "broken",
        &factory,
        Native::suite_capabilities(),
        work.path(),
    );
    eprintln!("{report}");
    let failed: Vec<&str> = report.failed().iter().map(|c| c.name).collect();
    for name in ["ViewReadonly", "Walk"] {
        assert!(failed.contains(&name), "{name} did not fail: {report}");
    }
    assert!(!failed.contains(&"Basic"), "{report}");
}
