//! Processes that just stay around, for scenarios about supervision and shutdown: the test
//! image has no shell and no `sleep`, so the agent binary itself plays them
//! (`berth-test-agent --ignore-sigterm | --sleep | --spawn-sleeper`).

use std::io;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{signal, SigHandler, Signal};

/// Ignores SIGTERM and sleeps until killed: a service that will not stop politely.
pub fn ignore_sigterm_forever() -> io::Result<std::convert::Infallible> {
    // SAFETY: SIG_IGN installs no handler code; nothing else in this process touches
    // SIGTERM's disposition.
    unsafe { signal(Signal::SIGTERM, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    println!("ignoring SIGTERM (pid {})", std::process::id());
    sleep_forever()
}

/// Leaves the caller's session (so a killed process group of the caller spares it) and
/// sleeps until killed.
pub fn sleep_in_own_session() -> io::Result<std::convert::Infallible> {
    nix::unistd::setsid().map_err(io::Error::from)?;
    sleep_forever()
}

fn sleep_forever() -> io::Result<std::convert::Infallible> {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Starts `<this binary> --sleep` detached (stdio on /dev/null, own session) and returns its
/// pid without waiting for it: a long-running process the agent's `run` can start.
pub fn spawn_sleeper() -> io::Result<u32> {
    let child = Command::new("/proc/self/exe")
        .arg("--sleep")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(child.id())
}
