//! `run`: executes a program from the image with a timeout and captures its output.

use std::collections::BTreeMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::OpError;
use crate::process::collect;
use crate::protocol::RunOutput;

/// Timeout when the request gives none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// How long to wait for the output pipes to close once the program exited; a background
/// process it left behind may hold them open forever.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Runs `argv` with `env` added to the agent's environment.
///
/// The program gets its own process group, so on timeout everything it started is killed too.
pub fn run(
    argv: &[String],
    env: Option<&BTreeMap<String, String>>,
    timeout_secs: Option<u64>,
) -> Result<RunOutput, OpError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(OpError::InvalidArgument("argv is empty".into()));
    };
    let secs = timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.into_iter().flatten())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(|source| OpError::Spawn {
        program: program.clone(),
        source,
    })?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());

    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let pgid = Pid::from_raw(child.id() as i32);
                // The group may already be gone; the wait below settles it either way.
                let _ = nix::sys::signal::killpg(pgid, Signal::SIGKILL);
                let _ = child.wait();
                return Err(OpError::Timeout {
                    program: program.clone(),
                    secs,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                return Err(OpError::Wait {
                    program: program.clone(),
                    source,
                })
            }
        }
    };
    let signal = status.signal();
    Ok(RunOutput {
        status: status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0)),
        signal,
        stdout: stdout.recv_timeout(PIPE_GRACE).unwrap_or_default(),
        stderr: stderr.recv_timeout(PIPE_GRACE).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn captures_output_status_and_env() {
        let env = BTreeMap::from([("BERTH_X".to_string(), "42".to_string())]);
        let out = run(
            &argv(&["/bin/sh", "-c", "echo out $BERTH_X; echo err >&2; exit 3"]),
            Some(&env),
            None,
        )
        .unwrap();
        assert_eq!(out.status, 3);
        assert_eq!(out.stdout, "out 42\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.success());
    }

    #[test]
    fn reports_signals_timeouts_and_missing_programs() {
        let out = run(&argv(&["/bin/sh", "-c", "kill -9 $$"]), None, None).unwrap();
        assert_eq!((out.status, out.signal), (137, Some(9)));
        let started = Instant::now();
        let e = run(&argv(&["/bin/sleep", "30"]), None, Some(1)).unwrap_err();
        assert!(matches!(e, OpError::Timeout { secs: 1, .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(matches!(
            run(&argv(&["/nonexistent"]), None, None),
            Err(OpError::Spawn { .. })
        ));
        assert!(matches!(
            run(&[], None, None),
            Err(OpError::InvalidArgument(_))
        ));
    }
}
