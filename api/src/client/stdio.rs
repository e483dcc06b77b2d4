//! The client end of container stdio over the API: [`attach`] opens `Tasks.Attach` on any
//! connection to berthd (local socket, QEMU bridge, remote API) and returns a [`Session`]
//! whose [`Input`] writes stdin, ends it, resizes the terminal and detaches, and whose
//! [`Output`] yields the process's stdout and stderr and then its exit. Credits are handled
//! here: output is acknowledged as it is handed over, stdin waits for the shim's
//! acknowledgements (see `proto/berth/stdio/v1/stdio.proto`).
//!
//! Used by berthctl (`run`, `tasks exec`, `tasks attach`) and meant for in-process clients
//! such as berth-cri's Exec/Attach. To run a process with nothing lost, attach between its
//! creation and its start: `Tasks.Create` (or `Exec`), [`attach`], then `Tasks.Start` (with
//! the exec id) — output comes only to clients attached when it is written.
//!
//! ```no_run
//! # async fn f(tasks: berth_api::proto::tasks_ttrpc::TasksClient) -> ttrpc::Result<()> {
//! use berth_api::client::stdio::{attach, AttachOptions, Event};
//! let ctx = berth_api::keys::context("default", std::time::Duration::ZERO);
//! let mut s = attach(&tasks, ctx, AttachOptions::new("c1").stdin(true)).await?;
//! s.input.write(b"hello\n").await?;
//! s.input.close().await?;
//! while let Some(ev) = s.output.next().await {
//!     match ev? {
//!         Event::Stdout(b) | Event::Stderr(b) => print!("{}", String::from_utf8_lossy(&b)),
//!         Event::Exit { status, .. } => println!("exit {status}"),
//!     }
//! }
//! # Ok(()) }
//! ```

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use ttrpc::r#async::CSSender;

use crate::proto::stdio as pb;
use crate::proto::tasks_ttrpc::TasksClient;
use crate::stdio::{request, MAX_STDIN_CHUNK};
use pb::attach_request::Msg as In;
use pb::attach_response::Msg as Out;

/// Output chunks buffered in the client beyond the window.
const BUFFERED: usize = 4;

/// What to attach to, and how.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    pub container_id: String,
    /// Empty: the init.
    pub exec_id: String,
    pub stdin: bool,
    pub tty: bool,
    /// With `tty`: (width, height) in cells.
    pub size: Option<(u16, u16)>,
    /// Output bytes in flight before an ack; 0: the default (1 MiB).
    pub window: u32,
}

impl AttachOptions {
    /// The init of task `container_id`: output only.
    pub fn new(container_id: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            ..Default::default()
        }
    }

    /// Exec `exec_id` instead of the init.
    pub fn exec(mut self, exec_id: &str) -> Self {
        self.exec_id = exec_id.to_owned();
        self
    }

    /// Attach stdin too.
    pub fn stdin(mut self, on: bool) -> Self {
        self.stdin = on;
        self
    }

    /// Drive the process's terminal, of `size` (width, height) when known.
    pub fn tty(mut self, on: bool, size: Option<(u16, u16)>) -> Self {
        self.tty = on;
        self.size = size;
        self
    }
}

/// What the process writes, then how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Stdout(Vec<u8>),
    /// Never for a process with a terminal (its output is one stream).
    Stderr(Vec<u8>),
    /// The last event: the exit code, or 128 + the signal that killed it.
    Exit {
        status: u32,
        exited_at: i64,
    },
}

/// An attached client.
pub struct Session {
    /// The process's pid (0 for an exec not started yet).
    pub pid: u32,
    /// The process has a terminal.
    pub terminal: bool,
    pub input: Input,
    pub output: Output,
}

/// The sending side of a session; clones share the stdin credit.
#[derive(Clone)]
pub struct Input {
    tx: CSSender<pb::AttachRequest>,
    credit: Arc<Semaphore>,
    window: usize,
}

/// The receiving side of a session.
pub struct Output {
    rx: mpsc::Receiver<ttrpc::Result<Event>>,
}

/// Opens `Tasks.Attach` for `o` on `tasks` and waits until attached (`ctx` carries the
/// namespace; its deadline, if any, bounds the whole stream, so give none).
pub async fn attach(
    tasks: &TasksClient,
    ctx: ttrpc::context::Context,
    o: AttachOptions,
) -> ttrpc::Result<Session> {
    let stream = tasks.attach(ctx).await?;
    let (tx, mut rx) = stream.split();
    let size = o.size.map(|(w, h)| pb::WindowSize {
        width: u32::from(w),
        height: u32::from(h),
        ..Default::default()
    });
    let open = pb::AttachOpen {
        container_id: o.container_id,
        exec_id: o.exec_id,
        stdin: o.stdin,
        tty: o.tty,
        size: size.into(),
        window: o.window,
        ..Default::default()
    };
    tx.send(&request(In::Open(open))).await?;
    let attached = match rx.recv().await? {
        pb::AttachResponse {
            msg: Some(Out::Attached(a)),
            ..
        } => a,
        other => {
            return Err(ttrpc::Error::Others(format!(
                "attach: expected `attached` first, got {other:?}"
            )))
        }
    };
    let window = attached.stdin_window as usize;
    let credit = Arc::new(Semaphore::new(window));
    let (out_tx, out_rx) = mpsc::channel(BUFFERED);
    tokio::spawn(receive(rx, tx.clone(), out_tx, credit.clone()));
    Ok(Session {
        pid: attached.pid,
        terminal: attached.terminal,
        input: Input { tx, credit, window },
        output: Output { rx: out_rx },
    })
}

/// Moves the server's messages into the output queue, acknowledging output as it is queued
/// and returning stdin credit, until the exit, the end of the stream or an error.
async fn receive(
    mut rx: ttrpc::r#async::CSReceiver<pb::AttachResponse>,
    tx: CSSender<pb::AttachRequest>,
    out: mpsc::Sender<ttrpc::Result<Event>>,
    credit: Arc<Semaphore>,
) {
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            // The session's owner dropped its output: detach.
            () = out.closed() => {
                let _ = tx.close_send().await;
                return;
            }
        };
        let (event, acked) = match msg {
            Ok(m) => match m.msg {
                Some(Out::Stdout(b)) => {
                    let n = b.len();
                    (Event::Stdout(b), n)
                }
                Some(Out::Stderr(b)) => {
                    let n = b.len();
                    (Event::Stderr(b), n)
                }
                Some(Out::StdinAck(n)) => {
                    credit.add_permits(n as usize);
                    continue;
                }
                Some(Out::Exit(e)) => (
                    Event::Exit {
                        status: e.exit_status,
                        exited_at: e.exited_at,
                    },
                    0,
                ),
                _ => continue,
            },
            // The server ended the stream (after our detach, or its shim went away).
            Err(ttrpc::Error::Eof) => return,
            Err(e) => {
                let _ = out.send(Err(e)).await;
                return;
            }
        };
        let exit = matches!(event, Event::Exit { .. });
        if out.send(Ok(event)).await.is_err() {
            let _ = tx.close_send().await;
            return;
        }
        if exit {
            return;
        }
        let ack = request(In::Ack(acked as u32));
        if tx.send(&ack).await.is_err() {
            return;
        }
    }
}

impl Input {
    /// Writes `data` to the process's stdin, waiting for credit as the shim writes it on.
    pub async fn write(&self, data: &[u8]) -> ttrpc::Result<()> {
        let step = MAX_STDIN_CHUNK.min(self.window.max(1));
        for chunk in data.chunks(step) {
            let permits = self
                .credit
                .acquire_many(chunk.len() as u32)
                .await
                .map_err(|_| ttrpc::Error::Others("attach: stdin credit closed".into()))?;
            permits.forget();
            self.tx.send(&request(In::Stdin(chunk.to_vec()))).await?;
        }
        Ok(())
    }

    /// Ends the process's input (end of file; ^D on a terminal).
    pub async fn close(&self) -> ttrpc::Result<()> {
        self.tx.send(&request(In::CloseStdin(true))).await
    }

    /// Sets the terminal's size in cells.
    pub async fn resize(&self, width: u16, height: u16) -> ttrpc::Result<()> {
        let ws = pb::WindowSize {
            width: u32::from(width),
            height: u32::from(height),
            ..Default::default()
        };
        self.tx.send(&request(In::Resize(ws))).await
    }

    /// Detaches: the process goes on; the output ends (without an exit event).
    pub async fn detach(&self) -> ttrpc::Result<()> {
        match self.tx.close_send().await {
            Err(ttrpc::Error::LocalClosed) => Ok(()),
            r => r,
        }
    }
}

impl Output {
    /// The next event; `None` once the stream ended (after the exit, or after a detach).
    pub async fn next(&mut self) -> Option<ttrpc::Result<Event>> {
        self.rx.recv().await
    }
}

/// Everything a process wrote, and how it ended (`None`: the stream ended first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Option<u32>,
}

impl Session {
    /// Writes `stdin` (then ends it) when given, and collects the output until the exit:
    /// ExecSync's shape.
    pub async fn collect(mut self, stdin: Option<Vec<u8>>) -> ttrpc::Result<Collected> {
        let input = self.input.clone();
        let feed = async move {
            if let Some(data) = stdin {
                input.write(&data).await?;
                input.close().await?;
            }
            Ok::<_, ttrpc::Error>(())
        };
        let read = async {
            let mut c = Collected::default();
            while let Some(ev) = self.output.next().await {
                match ev? {
                    Event::Stdout(b) => c.stdout.extend_from_slice(&b),
                    Event::Stderr(b) => c.stderr.extend_from_slice(&b),
                    Event::Exit { status, .. } => c.exit = Some(status),
                }
            }
            Ok::<_, ttrpc::Error>(c)
        };
        let (fed, read) = tokio::join!(feed, read);
        let c = read?;
        // Stdin that could not be delivered matters only if the process did not finish.
        if c.exit.is_none() {
            fed?;
        }
        Ok(c)
    }
}
