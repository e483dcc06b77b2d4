//! One authenticated client connection: ttrpc frames relayed between the client and the
//! backends, each new stream decided by the role table.
//!
//! Tasks of a connection: the client loop ([`inbound`]: reads client frames, decides,
//! forwards), one task per backend connection ([`upstream`]: relays the backend's frames to
//! the client), the watchdog (idle and slow-frame timeouts) and the deny-list watch. The
//! first of them to end ends the connection; its open streams are then answered (when the
//! client can still be written to) and audited.

mod inbound;
mod shared;
#[cfg(test)]
mod tests;
mod upstream;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use crate::config::{Backends, Limits, Live};
use crate::frame::{self, MESSAGE_TYPE_REQUEST};
use crate::identity::Identity;
use shared::{Activity, ClientWriter, Fatal, Shared, Streams};

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed it.
    ClientClosed,
    /// No open stream and no frame for the idle timeout.
    Idle,
    /// A client frame took longer than the frame timeout to arrive.
    SlowFrame,
    /// The client did not read a frame within the frame timeout.
    SlowClient,
    /// Its certificate serial was denied (at connect or by a reload).
    Denied,
    /// A frame over the size cap.
    TooLong(String),
    /// A frame that breaks the protocol.
    Protocol(String),
    /// The connection failed.
    Io(String),
    /// The listener is shutting down.
    Shutdown,
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            End::ClientClosed => f.write_str("closed by the client"),
            End::Idle => f.write_str("idle timeout"),
            End::SlowFrame => f.write_str("frame timeout (a frame arrived too slowly)"),
            End::SlowClient => f.write_str("write timeout (the client did not read)"),
            End::Denied => f.write_str("certificate serial denied"),
            End::TooLong(e) => write!(f, "refused frame: {e}"),
            End::Protocol(e) => write!(f, "protocol error: {e}"),
            End::Io(e) => write!(f, "I/O error: {e}"),
            End::Shutdown => f.write_str("listener shutting down"),
        }
    }
}

/// What a connection knows about itself.
#[derive(Debug)]
pub struct Session {
    /// The caller.
    pub identity: Identity,
    /// The caller's address.
    pub peer: SocketAddr,
    /// Where calls go.
    pub backends: Backends,
    /// Defences.
    pub limits: Limits,
    /// The listener-wide budget of Request bytes in memory (permits are bytes).
    pub budget: Arc<Semaphore>,
}

/// Relays `stream` (an authenticated connection) until it ends; `live` brings reloads (a
/// newly denied serial ends the connection).
pub async fn run<S>(session: Arc<Session>, stream: S, live: watch::Receiver<Arc<Live>>) -> End
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let shared = Arc::new(Shared {
        writer: ClientWriter::new(Box::pin(wr), session.limits.frame_timeout),
        streams: Streams::default(),
        activity: Activity::new(),
        fatal: Fatal::default(),
        session,
    });
    let end = tokio::select! {
        e = inbound::Inbound::new(rd, shared.clone()).run() => e,
        e = watchdog(&shared) => e,
        e = denied(&shared, live) => e,
        e = shared.fatal.wait() => e,
    };
    let (code, why) = match &end {
        End::Denied => (
            ttrpc::Code::PERMISSION_DENIED,
            format!(
                "certificate serial {} is denied on this node",
                shared.session.identity.serial
            ),
        ),
        other => (
            ttrpc::Code::UNAVAILABLE,
            format!("connection ended: {other}"),
        ),
    };
    let writable = !matches!(end, End::SlowClient | End::Io(_) | End::ClientClosed);
    shared.fail_streams(None, code, &why, writable).await;
    shared.writer.shutdown().await;
    end
}

async fn watchdog(shared: &Shared) -> End {
    let l = &shared.session.limits;
    let tick = (l.idle_timeout.min(l.frame_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if shared
            .activity
            .partial_for()
            .is_some_and(|t| t > l.frame_timeout)
        {
            return End::SlowFrame;
        }
        if shared.streams.len() == 0 && shared.activity.idle_for() > l.idle_timeout {
            return End::Idle;
        }
    }
}

async fn denied(shared: &Shared, mut live: watch::Receiver<Arc<Live>>) -> End {
    let serial = &shared.session.identity.serial;
    loop {
        if live.borrow_and_update().deny.contains(serial) {
            return End::Denied;
        }
        if live.changed().await.is_err() {
            // The listener is gone: nothing more will be reloaded.
            return std::future::pending().await;
        }
    }
}

/// Answers the first Request of a connection whose certificate is denied with
/// PERMISSION_DENIED naming the serial (so its client prints why), then closes it; waits at
/// most `timeout` for that Request.
pub async fn refuse_first<S>(mut stream: S, message: &str, max_frame: u32, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let exchange = async {
        let h = shared::read_header(&mut stream, None)
            .await
            .ok()
            .flatten()?;
        if h.kind != MESSAGE_TYPE_REQUEST || h.check_length(max_frame).is_err() {
            return None;
        }
        let mut sink = vec![0u8; upstream::CHUNK];
        let mut left = h.length as usize;
        while left > 0 {
            let n = left.min(sink.len());
            stream.read_exact(&mut sink[..n]).await.ok()?;
            left -= n;
        }
        let f = frame::status_frame(h.stream_id, ttrpc::Code::PERMISSION_DENIED, message);
        stream.write_all(&f).await.ok()?;
        stream.flush().await.ok()
    };
    let _ = tokio::time::timeout(timeout, exchange).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}
