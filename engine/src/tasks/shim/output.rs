//! A process's output hub in the shim: the copier threads read the process's stdout and
//! stderr (or its terminal), write every chunk into the container's log, and hand it to
//! each attached client's queue; the exit status goes to the attached clients once the
//! output written before the exit has been handed over.
//!
//! Ordering and flow control:
//! - each attached client has a bounded queue ([`QUEUE`] chunks). A copier waits for room in
//!   every queue, so a client that reads slowly slows the process down (its pipe fills), as a
//!   slow terminal does — nothing is dropped and the shim's memory stays bounded. A client
//!   that goes away drops its queue and is forgotten at the next chunk, so it never wedges
//!   the process;
//! - the exit is not a message in the queues: when the process has exited *and* each copier
//!   has drained what the process wrote before (end of file, or nothing more to read right
//!   after the exit), the hub drops its ends of the queues. A client's queue then yields
//!   every chunk still in it and ends, and the client reads the exit from the hub
//!   ([`Subscription::next`]): the exit always comes after the output.
//!
//! Why "nothing more to read right after the exit" counts as drained: a process's writes to
//! a pipe are in the pipe when `write` returns, so once its exit is known, an empty pipe holds
//! nothing of it. The pipe's end of file may come much later, when a background process
//! inherited the pipe; [`DRAIN_QUIET`] and [`DRAIN_CAP`] bound that wait, and whatever such
//! a process writes afterwards still goes to the log.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tokio::sync::mpsc;

use super::exits::ExitRecord;
use super::io::Log;

/// Chunks queued per attached client (each up to [`CHUNK`] bytes).
pub const QUEUE: usize = 8;

/// Largest chunk a copier reads (the default pipe buffer).
pub const CHUNK: usize = 64 * 1024;

/// After the exit, a copier that finds nothing to read for this long has drained the output
/// (a terminal's data reaches its master through a work queue: give it a moment).
const DRAIN_QUIET: u16 = 20;

/// After the exit, output that keeps coming (a background process holding the pipe) stops
/// holding the exit back after this long.
const DRAIN_CAP: Duration = Duration::from_secs(2);

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One piece of output, shared by every client it goes to.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Arc<[u8]>,
}

/// What an attached client gets next.
#[derive(Debug)]
pub enum Event {
    Output(Chunk),
    /// The process exited; everything it wrote before came first. The last event.
    Exit(ExitRecord),
}

struct State {
    next_id: u64,
    clients: Vec<(u64, mpsc::Sender<Chunk>)>,
    /// Copiers that have not drained yet.
    open: usize,
    exit: Option<ExitRecord>,
    /// Exit known and output drained: the queues were closed.
    finished: bool,
    /// Closed on the exit: wakes the copiers (a closed pipe polls readable forever).
    wake: Option<OwnedFd>,
}

/// The output hub of one process.
pub struct Output {
    state: Mutex<State>,
    /// The read end of the wake pipe, polled by the copiers.
    wake: OwnedFd,
}

impl Output {
    /// A hub whose output will come from `copiers` copier threads (2: stdout and stderr; 1:
    /// a terminal).
    pub fn new(copiers: usize) -> Result<Arc<Self>, crate::tasks::Error> {
        let (r, w) = super::io::pipe()?;
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                next_id: 0,
                clients: Vec::new(),
                open: copiers,
                exit: None,
                finished: false,
                wake: Some(w),
            }),
            wake: r,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("output hub lock")
    }

    /// Attaches a client: it gets the output from now on, then the exit. Never blocks (an
    /// async caller may hold no lock a copier waits on).
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let mut s = self.lock();
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = s.next_id;
        s.next_id += 1;
        if !s.finished {
            s.clients.push((id, tx));
        }
        Subscription {
            id,
            rx,
            hub: self.clone(),
            done: false,
        }
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().clients.retain(|(i, _)| *i != id);
    }

    /// Records the process's exit and wakes the copiers to drain. Never blocks.
    pub fn set_exit(&self, rec: ExitRecord) {
        let mut s = self.lock();
        if s.exit.is_some() {
            return;
        }
        s.exit = Some(rec);
        s.wake = None;
        Self::finish_if_done(&mut s);
    }

    /// Ends the hub at once with `rec`, whatever its copiers do: for a process that never
    /// ran (an exec whose start failed, perhaps before its copiers existed).
    pub fn abort(&self, rec: ExitRecord) {
        let mut s = self.lock();
        s.exit.get_or_insert(rec);
        s.wake = None;
        s.finished = true;
        s.clients.clear();
    }

    /// The recorded exit, if the process exited.
    pub fn exit(&self) -> Option<ExitRecord> {
        self.lock().exit
    }

    /// A copier has drained its stream.
    fn drained(&self) {
        let mut s = self.lock();
        s.open = s.open.saturating_sub(1);
        Self::finish_if_done(&mut s);
    }

    fn finish_if_done(s: &mut State) {
        if s.open == 0 && s.exit.is_some() && !s.finished {
            s.finished = true;
            // Dropping the senders ends each client's queue after its last chunk.
            s.clients.clear();
        }
    }

    /// Hands `chunk` to every attached client, waiting for room in each queue (blocking:
    /// copier threads only). A client whose queue is gone is forgotten.
    fn fan_out(&self, chunk: Chunk) {
        let clients: Vec<(u64, mpsc::Sender<Chunk>)> = self.lock().clients.clone();
        for (id, tx) in clients {
            if tx.blocking_send(chunk.clone()).is_err() {
                self.unsubscribe(id);
            }
        }
    }

    /// Starts the copier thread of `fd` (the shim's end of a pipe or a terminal's master,
    /// made non-blocking here): every chunk goes to `log`, and until the stream drained, to
    /// the attached clients.
    pub fn copy(
        self: &Arc<Self>,
        fd: OwnedFd,
        stream: Stream,
        log: Arc<Mutex<Log>>,
        cri: Option<Arc<super::cri_log::CriLog>>,
    ) -> std::thread::JoinHandle<()> {
        let hub = self.clone();
        std::thread::spawn(move || {
            let _ = set_nonblocking(&fd);
            let mut cri = cri.map(|l| {
                let s = match stream {
                    Stream::Stdout => super::cri_log::Stream::Stdout,
                    Stream::Stderr => super::cri_log::Stream::Stderr,
                };
                (l, super::cri_log::Lines::new(s))
            });
            hub.copy_loop(&fd, stream, &log, &mut cri);
            if let Some((l, lines)) = &mut cri {
                lines.finish(l);
            }
        })
    }

    fn copy_loop(
        &self,
        fd: &OwnedFd,
        stream: Stream,
        log: &Mutex<Log>,
        cri: &mut Option<(Arc<super::cri_log::CriLog>, super::cri_log::Lines)>,
    ) {
        let mut buf = vec![0u8; CHUNK];
        let mut exit_seen: Option<Instant> = None;
        let mut drained = false;
        loop {
            let watching_exit = exit_seen.is_none() && !drained;
            let timeout = if exit_seen.is_some() && !drained {
                PollTimeout::from(DRAIN_QUIET)
            } else {
                PollTimeout::NONE
            };
            let mut fds = [
                PollFd::new(fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
            ];
            let n = match poll(&mut fds[..if watching_exit { 2 } else { 1 }], timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            if watching_exit && fds[1].any().unwrap_or(false) {
                exit_seen = Some(Instant::now());
            }
            let ready = fds[0].any().unwrap_or(false);
            if n == 0 && !drained {
                // Nothing more right after the exit: the exited process's output is out.
                drained = true;
                self.drained();
                continue;
            }
            if ready {
                match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(fd), &mut buf) {
                    // End of file; EIO: a terminal whose every slave end is closed.
                    Ok(0) | Err(nix::errno::Errno::EIO) => break,
                    Ok(n) => {
                        log.lock().expect("log lock").write(&buf[..n]);
                        if let Some((l, lines)) = cri {
                            lines.feed(l, &buf[..n]);
                        }
                        if !drained {
                            self.fan_out(Chunk {
                                stream,
                                data: Arc::from(&buf[..n]),
                            });
                        }
                    }
                    Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            if !drained && exit_seen.is_some_and(|t| t.elapsed() > DRAIN_CAP) {
                drained = true;
                self.drained();
            }
        }
        if !drained {
            self.drained();
        }
    }
}

/// Sets `O_NONBLOCK` on `fd` (the shim's ends only: the process's ends are other open file
/// descriptions, except a terminal's master, which only the shim holds).
pub(super) fn set_nonblocking(fd: &impl AsFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd());
    let flags = OFlag::from_bits_truncate(fcntl(raw, FcntlArg::F_GETFL)?);
    fcntl(raw, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(|_| ())
}

/// One attached client's view of a hub; dropping it detaches the client.
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Chunk>,
    hub: Arc<Output>,
    done: bool,
}

impl Subscription {
    /// The next chunk, then the exit; `None` after the exit was returned (or if the hub
    /// ended without one, which a live shim never does).
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        match self.rx.recv().await {
            Some(c) => Some(Event::Output(c)),
            None => {
                self.done = true;
                self.hub.exit().map(Event::Exit)
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn rec(code: u32) -> ExitRecord {
        ExitRecord {
            pid: 1,
            exit_status: code,
            exited_at: 0,
            oom_kills: 0,
        }
    }

    fn collect(sub: &mut Subscription) -> (Vec<u8>, Option<u32>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            let mut exit = None;
            while let Some(e) = sub.next().await {
                match e {
                    Event::Output(c) => out.extend_from_slice(&c.data),
                    Event::Exit(r) => exit = Some(r.exit_status),
                }
            }
            (out, exit)
        })
    }

    #[test]
    fn output_before_the_exit_comes_first_even_with_a_late_end_of_file() {
        let d = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Log::open(d.path().join("log"))));
        let hub = Output::new(1).unwrap();
        let mut sub = hub.subscribe();
        let (r, w) = super::super::io::pipe().unwrap();
        // A second holder of the write end (a background process) keeps the pipe open.
        let holder = w.try_clone().unwrap();
        let t = hub.copy(r, Stream::Stdout, log.clone(), None);
        let data = vec![b'x'; 3 * CHUNK + 17];
        let writer = std::thread::spawn(move || {
            std::fs::File::from(w).write_all(&data).unwrap();
        });
        // The consumer runs concurrently with the writer (the queue is bounded).
        let consumer = std::thread::spawn(move || collect(&mut sub));
        writer.join().unwrap();
        hub.set_exit(rec(3));
        let (out, exit) = consumer.join().unwrap();
        assert_eq!(out.len(), 3 * CHUNK + 17);
        assert_eq!(exit, Some(3));
        // Written after the exit: the log only.
        std::fs::File::from(holder).write_all(b"late\n").unwrap();
        t.join().unwrap();
        let logged = std::fs::read(d.path().join("log")).unwrap();
        assert!(logged.ends_with(b"late\n"));
        // A client attaching after the end gets the exit at once.
        let mut late = hub.subscribe();
        assert_eq!(collect(&mut late), (Vec::new(), Some(3)));
    }

    #[test]
    fn a_client_that_goes_away_never_blocks_the_process() {
        let d = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Log::open(d.path().join("log"))));
        let hub = Output::new(1).unwrap();
        let gone = hub.subscribe();
        drop(gone);
        let stalled = hub.subscribe();
        let (r, w) = super::super::io::pipe().unwrap();
        let t = hub.copy(r, Stream::Stderr, log, None);
        // More than a queue's worth with a client that never reads: only dropping it lets
        // the copier go on.
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(w);
            for _ in 0..(QUEUE + 4) {
                f.write_all(&vec![b'y'; CHUNK]).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(stalled);
        writer.join().unwrap();
        hub.set_exit(rec(0));
        t.join().unwrap();
        assert_eq!(
            std::fs::metadata(d.path().join("log")).unwrap().len(),
            ((QUEUE + 4) * CHUNK) as u64
        );
    }
}
