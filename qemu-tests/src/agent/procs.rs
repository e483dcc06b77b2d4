//! `kill` and `pidof`.

use std::fs;
use std::path::Path;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::OpError;
use crate::protocol::{Empty, PidofOutput};

/// Sends signal number `signal` (0 checks existence only) to `pid`.
pub fn kill(pid: i32, signal: i32) -> Result<Empty, OpError> {
    let sig = if signal == 0 {
        None
    } else {
        Some(
            Signal::try_from(signal)
                .map_err(|_| OpError::InvalidArgument(format!("unknown signal {signal}")))?,
        )
    };
    nix::sys::signal::kill(Pid::from_raw(pid), sig).map_err(|source| OpError::Kill {
        pid,
        signal,
        source,
    })?;
    Ok(Empty {})
}

/// Pids of the processes whose `comm` or basename of `argv[0]` is `name`, except the agent.
pub fn pidof(name: &str) -> Result<PidofOutput, OpError> {
    pidof_in(Path::new("/proc"), name, std::process::id() as i32)
}

fn pidof_in(proc_dir: &Path, name: &str, own_pid: i32) -> Result<PidofOutput, OpError> {
    let mut pids = Vec::new();
    for entry in fs::read_dir(proc_dir).map_err(OpError::Proc)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        // Processes can vanish between readdir and read: treat unreadable ones as gone.
        let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        let argv0 = String::from_utf8_lossy(argv0);
        let base = argv0.rsplit('/').next().unwrap_or_default();
        if comm.trim_end_matches('\n') == name || base == name {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(PidofOutput { pids })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidof_matches_comm_or_argv0_basename() {
        let tmp = tempfile::tempdir().unwrap();
        let add = |pid: &str, comm: &str, cmdline: &[u8]| {
            let d = tmp.path().join(pid);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(d.join("cmdline"), cmdline).unwrap();
        };
        add("1", "init", b"/sbin/init\0");
        add("42", "berthd", b"/usr/bin/berthd\0--config\0x\0");
        add("7", "berth", b"/usr/bin/berthd\0");
        let agent = format!("{}\0", berth_layout::paths::TEST_AGENT);
        add("9", "berth-test-agen", agent.as_bytes());
        add("self", "x", b"");
        assert_eq!(pidof_in(tmp.path(), "berthd", 9).unwrap().pids, vec![7, 42]);
        assert_eq!(
            pidof_in(tmp.path(), "berth-test-agent", 1).unwrap().pids,
            vec![9]
        );
        assert_eq!(
            pidof_in(tmp.path(), "berth-test-agent", 9).unwrap().pids,
            Vec::<i32>::new()
        );
    }

    #[test]
    fn kill_rejects_unknown_signals_and_checks_existence() {
        assert!(matches!(kill(1, 999), Err(OpError::InvalidArgument(_))));
        kill(std::process::id() as i32, 0).unwrap();
    }
}
