//! `berth`: the image's static multi-call binary. Dispatches on `basename(argv[0])`:
//! `init` (or running as PID 1) → berth-init, `berthd` → the engine, `berthctl` → the CLI.
//! `berth <applet> args…` works too.

use std::ffi::OsString;
use std::path::Path;

fn applet_name(arg0: &OsString) -> String {
    Path::new(arg0).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let mut name = args.first().map(applet_name).unwrap_or_default();
    if std::process::id() == 1 {
        berth_init::run();
    }
    if name == "berth" {
        if args.len() < 2 {
            eprintln!("usage: berth <init|berthd|berthctl> [args...]");
            std::process::exit(2);
        }
        args.remove(0);
        name = applet_name(&args[0]);
    }
    match name.as_str() {
        "init" | "berth-init" => berth_init::run(),
        "berthd" => std::process::exit(berth_runtime::daemon::main_with_args(args)),
        "berthctl" => std::process::exit(berth_runtime::ctl::main_with_args(args)),
        other => {
            eprintln!("berth: unknown applet {other:?} (expected init, berthd or berthctl)");
            std::process::exit(2);
        }
    }
}
