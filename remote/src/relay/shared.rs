//! State one connection's tasks share: the client's write half (one frame at a time), the
//! table of open streams and their backends, activity times for the watchdog, and the fatal
//! signal an upstream task raises to end the connection.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{End, Session};
use crate::audit::AuditedCall;
use crate::frame::{Header, HEADER_LEN};
use crate::table::Backend;

/// The client's write half, type-erased.
pub(crate) type ClientWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// Why relaying one frame to the client failed.
#[derive(Debug)]
pub(crate) enum RelayError {
    /// Writing to the client failed or took longer than the frame timeout.
    Client(End),
    /// Reading the frame from the backend failed.
    Upstream(std::io::Error),
}

/// The client's write half: whole frames, one at a time, each within the frame timeout (a
/// client that stops reading is closed, not waited for).
pub(crate) struct ClientWriter {
    inner: tokio::sync::Mutex<ClientWrite>,
    timeout: Duration,
}

impl ClientWriter {
    pub(crate) fn new(w: ClientWrite, timeout: Duration) -> ClientWriter {
        ClientWriter {
            inner: tokio::sync::Mutex::new(w),
            timeout,
        }
    }

    /// Writes a whole frame (header and payload in `frame`).
    pub(crate) async fn send(&self, frame: &[u8]) -> Result<(), End> {
        let mut w = self.inner.lock().await;
        let write = async {
            w.write_all(frame).await?;
            w.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Io(e.to_string())),
            Err(_) => Err(End::SlowClient),
        }
    }

    /// Writes `header`, then copies its payload from `from` through `buf`: frames from the
    /// backends are streamed, never held whole.
    pub(crate) async fn relay<R: AsyncRead + Unpin>(
        &self,
        header: &Header,
        from: &mut R,
        buf: &mut [u8],
    ) -> Result<(), RelayError> {
        let mut w = self.inner.lock().await;
        let copy = async {
            w.write_all(&header.encode())
                .await
                .map_err(|e| RelayError::Client(End::Io(e.to_string())))?;
            let mut left = header.length as usize;
            while left > 0 {
                let n = left.min(buf.len());
                from.read_exact(&mut buf[..n])
                    .await
                    .map_err(RelayError::Upstream)?;
                w.write_all(&buf[..n])
                    .await
                    .map_err(|e| RelayError::Client(End::Io(e.to_string())))?;
                left -= n;
            }
            w.flush()
                .await
                .map_err(|e| RelayError::Client(End::Io(e.to_string())))
        };
        match tokio::time::timeout(self.timeout, copy).await {
            Ok(r) => r,
            Err(_) => Err(RelayError::Client(End::SlowClient)),
        }
    }

    /// Closes the client's side (TLS close_notify), best effort, briefly.
    pub(crate) async fn shutdown(&self) {
        let mut w = self.inner.lock().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
    }
}

/// One open stream.
#[derive(Debug, Clone)]
pub(crate) struct Open {
    /// Where its frames go.
    pub backend: Backend,
    /// Set for calls that get an audit line when they end.
    pub audit: Option<AuditedCall>,
}

/// The open streams of a connection by stream id.
#[derive(Default)]
pub(crate) struct Streams(Mutex<HashMap<u32, Open>>);

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Open>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn insert(&self, id: u32, open: Open) {
        self.lock().insert(id, open);
    }
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.lock().contains_key(&id)
    }
    pub(crate) fn backend_of(&self, id: u32) -> Option<Backend> {
        self.lock().get(&id).map(|o| o.backend)
    }
    pub(crate) fn is_audited(&self, id: u32) -> bool {
        self.lock().get(&id).is_some_and(|o| o.audit.is_some())
    }
    pub(crate) fn remove(&self, id: u32) -> Option<Open> {
        self.lock().remove(&id)
    }
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
    /// Removes and returns the streams of `backend` (all when `None`).
    pub(crate) fn drain(&self, backend: Option<Backend>) -> Vec<(u32, Open)> {
        let mut m = self.lock();
        let ids: Vec<u32> = m
            .iter()
            .filter(|(_, o)| backend.is_none_or(|b| o.backend == b))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| m.remove(&id).map(|o| (id, o)))
            .collect()
    }
}

/// Activity times in milliseconds since the connection started, for the watchdog.
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    partial_since_ms: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            partial_since_ms: AtomicU64::new(NONE),
        }
    }
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }
    /// A whole frame went through.
    pub(crate) fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }
    /// The first bytes of a client frame arrived.
    pub(crate) fn frame_begun(&self) {
        self.partial_since_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }
    /// The client frame was read whole.
    pub(crate) fn frame_done(&self) {
        self.partial_since_ms.store(NONE, Ordering::Relaxed);
        self.touch();
    }
    /// Time since the last whole frame.
    pub(crate) fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }
    /// Time the current client frame has been arriving, if one is.
    pub(crate) fn partial_for(&self) -> Option<Duration> {
        match self.partial_since_ms.load(Ordering::Relaxed) {
            NONE => None,
            t => Some(Duration::from_millis(self.now_ms().saturating_sub(t))),
        }
    }
}

/// An end raised by a task other than the client loop (an upstream task that found the
/// client gone or too slow).
#[derive(Default)]
pub(crate) struct Fatal {
    notify: tokio::sync::Notify,
    end: Mutex<Option<End>>,
}

impl Fatal {
    pub(crate) fn raise(&self, end: End) {
        let mut e = self.end.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_none() {
            *e = Some(end);
        }
        self.notify.notify_one();
    }
    pub(crate) async fn wait(&self) -> End {
        loop {
            if let Some(e) = self.end.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return e;
            }
            self.notify.notified().await;
        }
    }
}

/// Everything a connection's tasks share.
pub(crate) struct Shared {
    pub session: Arc<Session>,
    pub writer: ClientWriter,
    pub streams: Streams,
    pub activity: Activity,
    pub fatal: Fatal,
}

impl Shared {
    /// Answers `stream_id` with a status and no payload.
    pub(crate) async fn answer(
        &self,
        stream_id: u32,
        code: ttrpc::Code,
        message: &str,
    ) -> Result<(), End> {
        self.writer
            .send(&crate::frame::status_frame(stream_id, code, message))
            .await
    }

    /// Ends every stream of `backend` (all streams when `None`) with `code`/`why` and writes
    /// their audit lines: what the client sees when a backend or the connection goes away.
    /// With `answer` false (the client cannot be written to) only the audit lines remain;
    /// answering stops at the first write that fails.
    pub(crate) async fn fail_streams(
        &self,
        backend: Option<Backend>,
        code: ttrpc::Code,
        why: &str,
        mut answer: bool,
    ) {
        for (id, open) in self.streams.drain(backend) {
            if answer {
                let sent = tokio::time::timeout(Duration::from_secs(1), self.answer(id, code, why));
                answer = matches!(sent.await, Ok(Ok(())));
            }
            if let Some(a) = open.audit {
                let s = &self.session;
                crate::audit::record(&s.identity, s.peer, &a, &crate::audit::result_of(code, why));
            }
        }
    }
}

/// Reads a frame header; `None` at a clean end of stream before its first byte. The first
/// byte starts the frame clock of [`Activity`].
pub(crate) async fn read_header<R: AsyncRead + Unpin>(
    rd: &mut R,
    activity: Option<&Activity>,
) -> std::io::Result<Option<Header>> {
    let mut b = [0u8; HEADER_LEN];
    let n = match rd.read(&mut b).await {
        // ttrpc clients close without TLS close_notify (rustls reports UnexpectedEof): at a
        // frame boundary that is an ordinary end, nothing was cut.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        r => r?,
    };
    if n == 0 {
        return Ok(None);
    }
    if let Some(a) = activity {
        a.frame_begun();
    }
    rd.read_exact(&mut b[n..]).await?;
    Ok(Some(Header::parse(&b)))
}
