//! One connection to a backend (berthd or init) on behalf of one client connection, and the
//! task relaying its frames back to the client.
//!
//! Each client connection has at most one upstream connection per backend, opened on its
//! first call there. Stream ids need no mapping: the client picks them (odd, increasing),
//! each stream goes to exactly one backend, and each backend sees only its own streams' ids
//! — gaps are fine for a ttrpc server. Frames from a backend end their stream when they are
//! a Response, or data with `FLAG_REMOTE_CLOSED` (ttrpc's client rule); that is when the
//! stream leaves the table and its audit line is written.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

use super::shared::{read_header, RelayError, Shared};
use crate::audit;
use crate::frame::{self, Header, MESSAGE_TYPE_RESPONSE};
use crate::table::Backend;

/// Bytes copied per read when streaming a frame through.
pub(crate) const CHUNK: usize = 16 << 10;

/// A live connection to a backend.
pub(crate) struct Upstream {
    pub writer: OwnedWriteHalf,
    alive: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Connects to `backend` at `path` (within the frame timeout) and starts relaying what
    /// it sends to the client.
    pub(crate) async fn connect(
        backend: Backend,
        path: &Path,
        shared: Arc<Shared>,
    ) -> std::io::Result<Upstream> {
        let timeout = shared.session.limits.frame_timeout;
        let sock = tokio::time::timeout(timeout, UnixStream::connect(path))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let (rd, writer) = sock.into_split();
        let alive = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(read_loop(backend, rd, shared, alive.clone()));
        Ok(Upstream {
            writer,
            alive,
            task,
        })
    }

    /// Whether the backend is still connected.
    pub(crate) fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

async fn read_loop(
    backend: Backend,
    mut rd: OwnedReadHalf,
    shared: Arc<Shared>,
    alive: Arc<AtomicBool>,
) {
    let max = shared.session.limits.max_frame;
    let mut buf = vec![0u8; CHUNK];
    let why = loop {
        let h = match read_header(&mut rd, None).await {
            Ok(Some(h)) => h,
            Ok(None) => break format!("{} closed the connection", backend.name()),
            Err(e) => break format!("reading from {}: {e}", backend.name()),
        };
        if let Err(e) = h.check_length(max) {
            break format!("{} sent a bad frame: {e}", backend.name());
        }
        let ends = h.ends_stream();
        let audited = ends && shared.streams.is_audited(h.stream_id);
        // Forget the stream first, so the client's next call never finds it still counted.
        let open = if ends {
            shared.streams.remove(h.stream_id)
        } else {
            None
        };
        let sent = if audited && h.kind == MESSAGE_TYPE_RESPONSE {
            // An audited call's answer is read whole (at most max_frame) for its status.
            relay_reading_status(&h, &mut rd, &shared).await
        } else {
            shared
                .writer
                .relay(&h, &mut rd, &mut buf)
                .await
                .map(|()| "OK".to_string())
        };
        let result = match sent {
            Ok(r) => r,
            Err(RelayError::Upstream(e)) => break format!("reading from {}: {e}", backend.name()),
            Err(RelayError::Client(end)) => {
                shared.fatal.raise(end);
                return;
            }
        };
        shared.activity.touch();
        if let Some(a) = open.and_then(|o| o.audit) {
            let s = &shared.session;
            audit::record(&s.identity, s.peer, &a, &result);
        }
    };
    alive.store(false, Ordering::Relaxed);
    tracing::debug!(peer = %shared.session.peer, backend = backend.name(), %why, "upstream connection ended");
    shared
        .fail_streams(Some(backend), ttrpc::Code::UNAVAILABLE, &why, true)
        .await;
}

async fn relay_reading_status(
    h: &Header,
    rd: &mut OwnedReadHalf,
    shared: &Shared,
) -> Result<String, RelayError> {
    let mut frame_bytes = Vec::with_capacity(frame::HEADER_LEN + h.length as usize);
    frame_bytes.extend_from_slice(&h.encode());
    frame_bytes.resize(frame::HEADER_LEN + h.length as usize, 0);
    rd.read_exact(&mut frame_bytes[frame::HEADER_LEN..])
        .await
        .map_err(RelayError::Upstream)?;
    let (code, message) = frame::response_status(&frame_bytes[frame::HEADER_LEN..]);
    shared
        .writer
        .send(&frame_bytes)
        .await
        .map_err(RelayError::Client)?;
    Ok(audit::result_of(code, &message))
}

/// Writes a whole frame to a backend within `timeout`.
pub(crate) async fn write_frame(
    w: &mut OwnedWriteHalf,
    frame_parts: &[&[u8]],
    timeout: std::time::Duration,
) -> std::io::Result<()> {
    let write = async {
        for p in frame_parts {
            w.write_all(p).await?;
        }
        w.flush().await
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

/// Why the client loop gave up on a backend after a failed write.
pub(crate) fn write_failed(backend: Backend, e: &std::io::Error) -> String {
    format!("writing to {}: {e}", backend.name())
}
