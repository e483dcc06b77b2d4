//! The client's frames: each Request is read whole (within the request budget), decoded,
//! decided by [`crate::policy`] and either answered or forwarded to its backend; data frames
//! of open streams are streamed through to the backend of their stream, and data frames of
//! any other stream are dropped (a late close after the server's answer is normal and must
//! not be answered: ttrpc clients would take the answer for a later call's).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::shared::{read_header, Open, Shared};
use super::upstream::{write_failed, write_frame, Upstream, CHUNK};
use super::End;
use crate::audit::{self, AuditedCall};
use crate::frame::{decode_request, Header, MESSAGE_TYPE_DATA, MESSAGE_TYPE_REQUEST};
use crate::policy::{decide, Decision};
use crate::table::Backend;

/// The client loop of one connection.
pub(crate) struct Inbound<R> {
    rd: R,
    shared: Arc<Shared>,
    berthd: Option<Upstream>,
    init: Option<Upstream>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Inbound<R> {
    pub(crate) fn new(rd: R, shared: Arc<Shared>) -> Self {
        Inbound {
            rd,
            shared,
            berthd: None,
            init: None,
            buf: vec![0u8; CHUNK],
        }
    }

    /// Reads the client's frames until the connection must end.
    pub(crate) async fn run(mut self) -> End {
        loop {
            let h = match read_header(&mut self.rd, Some(&self.shared.activity)).await {
                Ok(Some(h)) => h,
                Ok(None) => return End::ClientClosed,
                Err(e) => return End::Io(e.to_string()),
            };
            let max = self.shared.session.limits.max_frame;
            if let Err(e) = h.check_length(max) {
                // Refused on the header: the announced payload is never read nor allocated.
                if h.kind == MESSAGE_TYPE_REQUEST && h.stream_id % 2 == 1 {
                    let _ = self
                        .shared
                        .answer(h.stream_id, ttrpc::Code::RESOURCE_EXHAUSTED, &e.to_string())
                        .await;
                }
                return End::TooLong(e.to_string());
            }
            let r = match h.kind {
                MESSAGE_TYPE_REQUEST => self.request(h).await,
                MESSAGE_TYPE_DATA => self.data(h).await,
                k => Err(End::Protocol(format!("frame type {k} from a client"))),
            };
            if let Err(end) = r {
                return end;
            }
            self.shared.activity.frame_done();
        }
    }

    fn slot(&mut self, b: Backend) -> &mut Option<Upstream> {
        match b {
            Backend::Berthd => &mut self.berthd,
            Backend::Init => &mut self.init,
        }
    }

    /// Reads and drops `len` payload bytes.
    async fn discard(&mut self, len: u32) -> Result<(), End> {
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(self.buf.len());
            self.rd
                .read_exact(&mut self.buf[..n])
                .await
                .map_err(|e| End::Io(e.to_string()))?;
            left -= n;
        }
        Ok(())
    }

    async fn request(&mut self, h: Header) -> Result<(), End> {
        let s = self.shared.clone();
        let id = h.stream_id;
        if id.is_multiple_of(2) {
            self.discard(h.length).await?;
            return s
                .answer(id, ttrpc::Code::INVALID_ARGUMENT, "stream id must be odd")
                .await;
        }
        if s.streams.contains(id) {
            return Err(End::Protocol(format!("stream {id} opened twice")));
        }
        if s.streams.len() >= s.session.limits.max_streams {
            self.discard(h.length).await?;
            let msg = format!(
                "too many open streams on this connection (at most {})",
                s.session.limits.max_streams
            );
            return s.answer(id, ttrpc::Code::RESOURCE_EXHAUSTED, &msg).await;
        }
        // The budget bounds the Requests held in memory over all connections; a Request
        // waits for room (within the frame timeout, enforced by the watchdog).
        let _permit = s
            .session
            .budget
            .clone()
            .acquire_many_owned(h.length.max(1))
            .await
            .map_err(|_| End::Shutdown)?;
        let mut payload = vec![0u8; h.length as usize];
        self.rd
            .read_exact(&mut payload)
            .await
            .map_err(|e| End::Io(e.to_string()))?;
        let call = match decode_request(&payload) {
            Ok(c) => c,
            Err(e) => {
                return s
                    .answer(id, ttrpc::Code::INVALID_ARGUMENT, &e.to_string())
                    .await
            }
        };
        let decision = decide(&s.session.identity, &call);
        let audited = decision.audited().then(|| AuditedCall {
            method: call.path(),
            class: match &decision {
                Decision::Allow { class, .. } => Some(*class),
                Decision::Refuse { class, .. } => *class,
            },
            namespace: berth_api::keys::namespace(&call.metadata),
        });
        let backend = match decision {
            Decision::Refuse { code, message, .. } => {
                if let Some(a) = &audited {
                    audit::record(
                        &s.session.identity,
                        s.session.peer,
                        a,
                        &audit::result_of(code, &message),
                    );
                }
                return s.answer(id, code, &message).await;
            }
            Decision::Allow { backend, .. } => backend,
        };
        if let Err(why) = self.ensure_upstream(backend).await {
            if let Some(a) = &audited {
                let result = audit::result_of(ttrpc::Code::UNAVAILABLE, &why);
                audit::record(&s.session.identity, s.session.peer, a, &result);
            }
            return s.answer(id, ttrpc::Code::UNAVAILABLE, &why).await;
        }
        s.streams.insert(
            id,
            Open {
                backend,
                audit: audited,
            },
        );
        let timeout = s.session.limits.frame_timeout;
        let up = self.slot(backend).as_mut().expect("ensured above");
        if let Err(e) = write_frame(&mut up.writer, &[&h.encode(), &payload], timeout).await {
            self.lose(backend, write_failed(backend, &e)).await;
        } else if !up.alive() {
            // The backend went away around the insert: its task may have failed the
            // backend's streams before this one was in the table, so fail it here.
            let why = format!("{} closed the connection", backend.name());
            self.lose(backend, why).await;
        }
        Ok(())
    }

    async fn data(&mut self, h: Header) -> Result<(), End> {
        let Some(backend) = self.shared.streams.backend_of(h.stream_id) else {
            tracing::trace!(stream = h.stream_id, "data for no open stream dropped");
            return self.discard(h.length).await;
        };
        let timeout = self.shared.session.limits.frame_timeout;
        let Some(up) = self.slot(backend).as_mut().filter(|u| u.alive()) else {
            return self.discard(h.length).await;
        };
        let mut writer_ok = write_frame(&mut up.writer, &[&h.encode()], timeout).await;
        let mut left = h.length as usize;
        while left > 0 {
            let n = left.min(self.buf.len());
            self.rd
                .read_exact(&mut self.buf[..n])
                .await
                .map_err(|e| End::Io(e.to_string()))?;
            if writer_ok.is_ok() {
                // Field by field: the upstream and the buffer are borrowed apart.
                let up = match backend {
                    Backend::Berthd => self.berthd.as_mut(),
                    Backend::Init => self.init.as_mut(),
                };
                let up = up.expect("checked above");
                writer_ok = write_frame(&mut up.writer, &[&self.buf[..n]], timeout).await;
            }
            left -= n;
        }
        if let Err(e) = writer_ok {
            // The rest of the frame was still read, so the client's framing stays in step.
            self.lose(backend, write_failed(backend, &e)).await;
        }
        Ok(())
    }

    /// Connects to `backend` unless a live connection exists; the error is the message for
    /// the client.
    async fn ensure_upstream(&mut self, backend: Backend) -> Result<(), String> {
        if self.slot(backend).as_ref().is_some_and(|u| u.alive()) {
            return Ok(());
        }
        let path = match backend {
            Backend::Berthd => self.shared.session.backends.berthd.clone(),
            Backend::Init => self.shared.session.backends.init.clone(),
        };
        match Upstream::connect(backend, &path, self.shared.clone()).await {
            Ok(u) => {
                *self.slot(backend) = Some(u);
                Ok(())
            }
            Err(e) => Err(format!("{} is unavailable: {e}", backend.name())),
        }
    }

    /// Drops the connection to `backend` and fails its streams.
    async fn lose(&mut self, backend: Backend, why: String) {
        *self.slot(backend) = None;
        self.shared
            .fail_streams(Some(backend), ttrpc::Code::UNAVAILABLE, &why, true)
            .await;
    }
}
