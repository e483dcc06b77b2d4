//! `berth`: the image's static multi-call binary. Dispatches on `basename(argv[0])`:
//! `init` → berth-init, `berthd` → the engine, `berthctl` → the CLI, `berth-shim` → a
//! container's shim (berthd starts it); `berth <applet> args…`
//! works too. Any other name running as PID 1 (e.g. `init=/usr/bin/berth`) is init.
//!
//! Names win over "am I PID 1": the engine may re-execute this binary as PID 1 of a new PID
//! namespace, and that must not turn into a second init.

use std::ffi::OsString;
use std::path::Path;

fn applet_name(arg0: &OsString) -> String {
    Path::new(arg0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let mut name = args.first().map(applet_name).unwrap_or_default();
    if name == "berth" && args.len() >= 2 {
        args.remove(0);
        name = applet_name(&args[0]);
    }
    match name.as_str() {
        "init" | "berth-init" => berth_init::run(),
        "berthd" => std::process::exit(berth_runtime::daemon::main_with_args(args)),
        "berthctl" => std::process::exit(berth_runtime::ctl::main_with_args(args)),
        berth_runtime::tasks::SHIM_ARGV0 => {
            std::process::exit(berth_runtime::tasks::shim::main_with_args(args))
        }
        _ if std::process::id() == 1 => berth_init::run(),
        "berth" => {
            eprintln!("usage: berth <init|berthd|berthctl> [args...]");
            std::process::exit(2);
        }
        other => {
            eprintln!("berth: unknown applet {other:?} (expected init, berthd or berthctl)");
            std::process::exit(2);
        }
    }
}
