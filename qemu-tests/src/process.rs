//! Running host commands (berthctl, berth-image) with a hang guard.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CommandOutput {
    /// Both streams, for error messages.
    pub fn combined(&self) -> String {
        let mut text = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&self.stderr);
        }
        text
    }
}

/// Describes a command for messages: program and arguments, space separated.
pub fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` with stdin closed, capturing its output; kills it after `timeout`.
pub fn run(command: Command, timeout: Duration) -> Result<CommandOutput> {
    run_fed(command, None, timeout)
}

/// Like [`run`], with `input` on the command's stdin (then its end) when given.
pub fn run_fed(
    mut command: Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<CommandOutput> {
    let line = command_line(&command);
    let started = Instant::now();
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io(format!("cannot start {line}")))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(Error::io(format!("cannot wait for {line}")))?
        {
            break status;
        }
        if started.elapsed() >= timeout {
            // Already exited is fine: wait() below reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout {
                what: line,
                timeout,
                context: String::new(),
            });
        }
        thread::sleep(Duration::from_millis(20));
    };
    let grace = Duration::from_secs(5);
    Ok(CommandOutput {
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
        elapsed: started.elapsed(),
    })
}

/// Like [`run`], but a non-zero exit is an error carrying the output.
pub fn run_ok(command: Command, timeout: Duration) -> Result<CommandOutput> {
    let line = command_line(&command);
    let out = run(command, timeout)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            command: line,
            status: out.status.to_string(),
            output: format!("\n{}", out.combined()),
        })
    }
}

/// Reads a pipe to its end on a thread; the text arrives on the returned channel.
pub(crate) fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}
