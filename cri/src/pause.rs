//! `berth-pause`: the process that holds a pod sandbox's namespaces (network, IPC, UTS, and
//! PID when the pod shares one), berth's own replacement for Kubernetes' pause image.
//!
//! It does what `pause.c` does: it runs as PID 1 of the pod's PID namespace, reaps the
//! zombies that containers sharing that namespace leave, and exits 0 on SIGINT or SIGTERM.
//! The signals are blocked and taken with `sigwait`: a PID 1 of a namespace receives only
//! signals it handles or blocks, so blocking them is what makes them arrive at all.

use std::ffi::OsString;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// The applet's name (the file name the binary is bind-mounted under in a sandbox).
pub const APPLET: &str = "berth-pause";

/// Reaps every exited child without blocking.
fn reap() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The applet's entry: waits for SIGINT/SIGTERM (exit 0), reaping on SIGCHLD. `-v` prints
/// the version and exits, like pause's.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    if args.iter().skip(1).any(|a| a == "-v") {
        println!("{APPLET} {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("{APPLET}: cannot block signals: {e}");
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(Signal::SIGINT | Signal::SIGTERM) => {
                eprintln!("{APPLET}: shutting down");
                return 0;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("{APPLET}: sigwait: {e}");
                return 1;
            }
        }
    }
}
