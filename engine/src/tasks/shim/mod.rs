//! The shim: one process per container, started by berthd as `berth-shim` (the same
//! binary). It double-forks and leaves berthd's session, so it survives berthd; becomes the
//! child subreaper, so the container's processes are its children whatever the executor's
//! forking does; goes into `containers.slice/<ns>-<id>/shim` on a cgroup v2 host; creates the
//! container with youki's `libcontainer` *before* it starts any thread (libcontainer clones
//! the calling process); then serves the shim API (`berth.shim.v1`) on `shim.sock`.
//!
//! It owns its processes' stdio: stdout and stderr go through pipes (or a terminal the
//! container creates, `-t`) into a size-capped log file (`log`, one rotation to `log.1`) and
//! to the clients attached over the API (`Attach`, relayed by berthd); stdin is `/dev/null`,
//! or with `-i` a pipe the shim keeps open for attached clients. Each exit is recorded in `exit` (written,
//! fsynced, renamed, directory fsynced) before any waiter is told, so a berthd that was down
//! reads it after its restart. Extra processes (`Exec`) are created by a short-lived helper
//! (`berth-shim exec …`, single-threaded, again because libcontainer clones its caller),
//! which reports the new pid and exits; the process is then re-parented to the shim.
//!
//! Startup protocol with berthd: the shim's stdout is a pipe on which it writes one line,
//! `ok <pid>` once the container exists and the socket listens, or `error: <message>`
//! ([`args`]).
//!
//! Split by concern: [`args`] (command line and start-up report), [`exits`] (durable exit
//! records), [`io`] (stdio, the capped log), [`output`] (the output hub: log and attached
//! clients, the exit after the output), [`console`] (terminals), [`executor`] (libcontainer
//! or an external runtime, sealing the binary, cgroups), [`exec`] (extra processes) and
//! [`process`] (the state machine the shim API drives).
//!
//! Where the shim's ttrpc server lives: in `berth-daemon` (`berth_daemon::shim`), with the
//! entry point of the shim process (applet `berth-shim`), not here. Every ttrpc server of
//! berth is a thin adapter in that crate, so this engine starts no server and speaks ttrpc
//! only as a client of its shims — the same rule as for berthd's services, checked by one
//! grep. The shim stays its own process: the adapter calls [`launch`] and then serves the
//! [`Shim`] it returns.

pub mod args;
pub mod console;
pub mod cri_log;
pub mod exec;
pub mod executor;
pub mod exits;
pub mod io;
pub mod output;
pub mod process;

pub use process::{Attachment, Copiers, Shim};

use crate::tasks::Error;

/// What [`launch`] returns in each process of its fork.
pub enum Launched {
    /// The process berthd started: the shim runs on in its child; exit now.
    Parent,
    /// The shim: the container exists; serve it (the init waits for Start).
    Shim(std::sync::Arc<Shim>, Copiers),
}

/// `berth-shim serve`: seals the shim's binary (re-executing from the read-only copy when
/// berthd did not start it sealed), forks once more so the shim is no child of a session
/// leader berthd waits for, and in the child creates the container of `a`.
pub fn launch(a: &args::ServeArgs) -> Result<Launched, Error> {
    executor::seal_exe(&a.dir)?;
    // The host's mount namespace, berthd's (still our parent here): the shim returns to it
    // before creating the container (executor::return_to_host_mounts).
    let host_mounts = std::fs::File::open(format!("/proc/{}/ns/mnt", nix::unistd::getppid()))
        .map_err(|source| Error::Io {
            what: "open berthd's mount namespace".into(),
            source,
        })?;
    // Leave berthd: fork once more so the shim is no session leader's child that berthd
    // waits for; berthd's Command ran setsid() already.
    // SAFETY: no thread exists yet in this process (the shim starts none before this), so
    // the child may do anything after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(Launched::Parent),
        Ok(nix::unistd::ForkResult::Child) => {
            executor::return_to_host_mounts(&host_mounts, &a.dir)?;
            drop(host_mounts);
            let (shim, copiers) = process::create(a)?;
            Ok(Launched::Shim(shim, copiers))
        }
        Err(e) => Err(Error::Internal(format!("fork: {e}"))),
    }
}
