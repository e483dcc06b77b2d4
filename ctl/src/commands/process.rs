//! What `run`, `tasks exec` and `tasks attach` share: a process's stdio over the API
//! connection ([`berth_api::client::stdio`]), between it and ours — our stdin to its stdin
//! (`-i`), its output to our stdout and stderr, our terminal raw with `-it` and its size sent
//! at the start and on SIGWINCH, Ctrl-P Ctrl-Q to detach from a terminal — and generated
//! ids. Nothing here names a path on the node: the same code works on the local socket,
//! through the QEMU bridge and over the remote API.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;

use berth_api::client::stdio::{Event, Session};
use berth_api::proto::tasks as tpb;
use nix::sys::termios;
use tokio::signal::unix::{signal, SignalKind};

use crate::connect::Berthd;
use crate::error::Error;

/// Ctrl-P then Ctrl-Q: detach from a terminal (docker's default keys).
const DETACH: [u8; 2] = [0x10, 0x11];

/// Refuses `-i -t` without a terminal on our stdin (raw mode needs one; docker says the
/// same).
pub(super) fn check_tty(stdin: bool, tty: bool) -> Result<(), Error> {
    if stdin && tty && !nix::unistd::isatty(0).unwrap_or(false) {
        return Err(Error::Usage(
            "the input device is not a terminal: -i with -t needs one on stdin (drop -t)".into(),
        ));
    }
    Ok(())
}

/// Our terminal's size (width, height), from stdin or stdout.
pub(super) fn window_size() -> Option<(u16, u16)> {
    for fd in [0, 1] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one `winsize` through the valid pointer.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_col > 0 {
            return Some((ws.ws_col, ws.ws_row));
        }
    }
    None
}

/// Our terminal in raw mode until dropped (keys go to the container's terminal as typed).
struct RawTerminal {
    saved: termios::Termios,
}

impl RawTerminal {
    fn enter() -> Result<Self, Error> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).map_err(|e| Error::Io {
            what: "read the terminal's settings".into(),
            source: e.into(),
        })?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw).map_err(|e| Error::Io {
            what: "put the terminal in raw mode".into(),
            source: e.into(),
        })?;
        Ok(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &self.saved);
    }
}

/// Finds the detach keys in what the user types: [`DetachKeys::feed`] returns the bytes to
/// send and whether the sequence is complete. A Ctrl-P is held back until the next key says
/// whether it starts the sequence.
#[derive(Default)]
pub(super) struct DetachKeys {
    held: bool,
}

impl DetachKeys {
    pub(super) fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len() + 1);
        for &b in data {
            if self.held {
                self.held = false;
                if b == DETACH[1] {
                    return (out, true);
                }
                out.push(DETACH[0]);
            }
            if b == DETACH[0] {
                self.held = true;
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// What SIGINT, SIGTERM and SIGHUP do while attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnSignal {
    /// Sent to the process (`run`, `tasks exec`).
    Forward,
    /// End the attach, the process goes on (`tasks attach`).
    Detach,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The process exited with this status.
    Exit(u32),
    /// We detached; the process goes on.
    Detached,
}

/// The process a session belongs to, for signals and messages.
pub(super) struct Target<'a> {
    pub(super) berthd: &'a Berthd,
    pub(super) container_id: &'a str,
    pub(super) exec_id: &'a str,
}

/// Reads our stdin on a plain thread (a blocking read cannot be cancelled, and a runtime
/// waits for its blocking tasks at exit): chunks, then `None` at end of file.
fn read_stdin() -> tokio::sync::mpsc::Receiver<Option<Vec<u8>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut stdin = std::io::stdin();
        loop {
            let chunk = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => None,
                Ok(n) => Some(buf[..n].to_vec()),
            };
            let end = chunk.is_none();
            if tx.blocking_send(chunk).is_err() || end {
                return;
            }
        }
    });
    rx
}

/// Runs `session` with our stdio until the process exits or we detach: `stdin` forwards our
/// stdin (ending it at our end of file), `raw` puts our terminal in raw mode and watches for
/// the detach keys.
pub(super) async fn pump(
    t: Target<'_>,
    session: Session,
    stdin: bool,
    raw: bool,
    on_signal: OnSignal,
) -> Result<Ended, Error> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(Error::io("handle SIGINT"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(Error::io("handle SIGTERM"))?;
    let mut sighup = signal(SignalKind::hangup()).map_err(Error::io("handle SIGHUP"))?;
    let mut sigwinch = signal(SignalKind::window_change()).map_err(Error::io("handle SIGWINCH"))?;
    let _raw = if raw {
        Some(RawTerminal::enter()?)
    } else {
        None
    };
    let Session {
        input, mut output, ..
    } = session;
    let (detached_tx, mut detached) = tokio::sync::oneshot::channel::<()>();
    // Our stdin goes on its own task: waiting for stdin credit must never stop the output
    // (and its acks) from flowing, or a process that is not reading would block us both.
    let forward = stdin.then(|| {
        let input = input.clone();
        let mut keys = DetachKeys::default();
        let mut rx = read_stdin();
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                let Some(data) = chunk else {
                    let _ = input.close().await;
                    return;
                };
                let (data, detach) = if raw { keys.feed(&data) } else { (data, false) };
                if !data.is_empty() && input.write(&data).await.is_err() {
                    return;
                }
                if detach {
                    let _ = input.detach().await;
                    let _ = detached_tx.send(());
                    return;
                }
            }
        })
    });
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    let mut was_detached = false;
    let mut keys_live = true;
    let result = loop {
        let sig = tokio::select! {
            ev = output.next() => match ev {
                Some(Ok(Event::Stdout(b))) => {
                    let _ = stdout.write_all(&b).and_then(|()| stdout.flush());
                    continue;
                }
                Some(Ok(Event::Stderr(b))) => {
                    let _ = stderr.write_all(&b);
                    continue;
                }
                Some(Ok(Event::Exit { status, .. })) => break Ok(Ended::Exit(status)),
                Some(Err(e)) => break Err(Error::call("attach")(e)),
                None if was_detached => break Ok(Ended::Detached),
                None => break Err(Error::NoResult { context: format!(
                    "attach to {} (it goes on: berthctl tasks attach {})",
                    describe(&t), t.container_id
                )}),
            },
            r = &mut detached, if keys_live => {
                // Err: the stdin task ended without the keys (end of file).
                keys_live = false;
                was_detached |= r.is_ok();
                continue;
            }
            _ = sigwinch.recv() => {
                if let Some((w, h)) = window_size() {
                    let _ = input.resize(w, h).await;
                }
                continue;
            }
            _ = sigint.recv() => libc::SIGINT,
            _ = sigterm.recv() => libc::SIGTERM,
            _ = sighup.recv() => libc::SIGHUP,
        };
        match on_signal {
            OnSignal::Forward => {
                let kill = tpb::KillRequest {
                    container_id: t.container_id.to_owned(),
                    exec_id: t.exec_id.to_owned(),
                    signal: sig as u32,
                    ..Default::default()
                };
                let _ = t.berthd.tasks().kill(t.berthd.ctx(), &kill).await;
            }
            OnSignal::Detach => {
                was_detached = true;
                let _ = input.detach().await;
            }
        }
    };
    if let Some(f) = forward {
        f.abort();
    }
    drop(_raw);
    if matches!(result, Ok(Ended::Detached)) {
        eprintln!(
            "berthctl: detached from {}; it goes on (berthctl tasks attach {})",
            describe(&t),
            t.container_id
        );
    }
    result
}

fn describe(t: &Target<'_>) -> String {
    if t.exec_id.is_empty() {
        format!("container {}", t.container_id)
    } else {
        format!("exec {} of container {}", t.exec_id, t.container_id)
    }
}

/// Whether our stdin is a terminal (raw mode needs one).
pub(super) fn stdin_is_tty() -> bool {
    nix::unistd::isatty(std::io::stdin().as_raw_fd()).unwrap_or(false)
}

/// A fresh id for a container or an exec: the time and our pid.
pub(super) fn gen_id() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("c{:x}{:x}", n & 0xffff_ffff_ffff, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_found_across_reads_and_a_lone_ctrl_p_passes() {
        let mut k = DetachKeys::default();
        assert_eq!(k.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        assert_eq!(k.feed(&[b'a', 0x10]), (b"a".to_vec(), false));
        assert_eq!(k.feed(&[0x11, b'z']), (Vec::new(), true));
        let mut k = DetachKeys::default();
        assert_eq!(k.feed(&[0x10, b'x']), (vec![0x10, b'x'], false));
        assert_eq!(k.feed(&[0x10, 0x10, 0x11]), (vec![0x10], true));
    }
}
