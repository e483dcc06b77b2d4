//! Runs the snapshotter conformance suite against one snapshotter and prints the report;
//! exits 1 when a case failed, 2 on bad usage. Static, so it can run inside a QEMU guest
//! (where the ZFS snapshotter will be checked).
//!
//! Usage: `berth-snapshotter-conformance <overlayfs|native> <work dir>`

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berth_runtime::snapshots::testsuite::{self, Capabilities, Factory};
use berth_runtime::snapshots::{native::Native, overlay::Overlay, Snapshotter};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, work] = args.as_slice() else {
        eprintln!("usage: berth-snapshotter-conformance <overlayfs|native> <work dir>");
        return ExitCode::from(2);
    };
    let overlay = |root: &Path| -> berth_runtime::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Overlay::open(root)?))
    };
    let native = |root: &Path| -> berth_runtime::snapshots::Result<Box<dyn Snapshotter>> {
        Ok(Box::new(Native::open(root)?))
    };
    let (factory, caps): (&Factory<'_>, Capabilities) = match name.as_str() {
        "overlayfs" => (&overlay, Overlay::suite_capabilities()),
        "native" => (&native, Native::suite_capabilities()),
        other => {
            eprintln!("unknown snapshotter {other:?}: expected overlayfs or native");
            return ExitCode::from(2);
        }
    };
    let work = PathBuf::from(work);
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("cannot create work directory {}: {e}", work.display());
        return ExitCode::from(2);
    }
    let report = testsuite::run(name, factory, caps, &work);
    println!("{report}");
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
