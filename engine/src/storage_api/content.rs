//! `berth.services.content.v1.Content`: blobs through the namespace's records.
//!
//! Reads check the namespace's record first, so a blob another namespace wrote is invisible
//! here. A committed write publishes the blob, then records it in the namespace (blob first,
//! then record), both under the database's resource guard so a concurrent collection cannot
//! take the blob in between.

use std::sync::Arc;

use async_trait::async_trait;
use ttrpc::r#async::{ServerStream, ServerStreamSender, TtrpcContext};

use super::{
    blocking, content_status, digest, invalid, lease, namespace, nanos, status, Storage, MAX_CHUNK,
};
use berth_api::proto::{content as pb, content_ttrpc};
use crate::content::{Digest, IngestManager, Ingester, Provider, Writer};
use crate::metadata::{ContentRecord, Error, LeaseResource};

pub(super) struct Service(pub Arc<Storage>);

fn info(r: ContentRecord) -> pb::Info {
    pb::Info {
        digest: r.digest.to_string(),
        size: i64::try_from(r.size).unwrap_or(i64::MAX),
        created_at: nanos(r.created_at),
        updated_at: nanos(r.updated_at),
        labels: r.labels.into_iter().collect(),
        ..Default::default()
    }
}

fn status_pb(s: crate::content::Status) -> pb::Status {
    pb::Status {
        started_at: nanos(s.started_at),
        updated_at: nanos(s.updated_at),
        ref_: s.reference,
        offset: i64::try_from(s.offset).unwrap_or(i64::MAX),
        total: i64::try_from(s.total).unwrap_or(i64::MAX),
        expected: s.expected.map(|d| d.to_string()).unwrap_or_default(),
        ..Default::default()
    }
}

fn non_negative(field: &str, n: i64) -> ttrpc::Result<u64> {
    u64::try_from(n).map_err(|_| invalid(format!("{field} must not be negative, got {n}")))
}

impl Service {
    fn write_response(&self, w: &Writer, action: pb::WriteAction) -> pb::WriteContentResponse {
        let s = w.status();
        pb::WriteContentResponse {
            action: action.into(),
            started_at: nanos(s.started_at),
            updated_at: nanos(s.updated_at),
            offset: i64::try_from(s.offset).unwrap_or(i64::MAX),
            total: i64::try_from(s.total).unwrap_or(i64::MAX),
            digest: w.digest().to_string(),
            ..Default::default()
        }
    }

    /// Commits `w` and records the blob in `ns` (and the lease), under the resource guard.
    fn commit(
        &self,
        ns: &str,
        lease: Option<&str>,
        w: Writer,
        size: u64,
        expected: Digest,
        labels: crate::metadata::Labels,
    ) -> ttrpc::Result<Digest> {
        let db = &self.0.db;
        let _guard = db.resource_guard();
        let blob_existed = match w.commit(size, expected) {
            Ok(_) => false,
            Err(crate::content::Error::AlreadyExists { .. }) => true,
            Err(e) => return Err(content_status(e)),
        };
        let (_, created) = db
            .content()
            .put_record(ns, expected, size, labels)
            .map_err(status)?;
        if let Some(l) = lease {
            db.leases()
                .add_resource(ns, l, &LeaseResource::Content(expected))
                .map_err(status)?;
        }
        if blob_existed && !created {
            return Err(status(Error::AlreadyExists {
                what: format!("content {expected} in namespace {ns:?}"),
            }));
        }
        Ok(expected)
    }
}

#[async_trait]
impl content_ttrpc::Content for Service {
    async fn info(
        &self,
        ctx: &TtrpcContext,
        req: pb::InfoRequest,
    ) -> ttrpc::Result<pb::InfoResponse> {
        let ns = namespace(ctx)?;
        let d = digest("digest", &req.digest)?;
        let r = blocking(|| self.0.db.content().get(&ns, &d)).map_err(status)?;
        Ok(pb::InfoResponse {
            info: Some(info(r)).into(),
            ..Default::default()
        })
    }

    async fn update(
        &self,
        ctx: &TtrpcContext,
        req: pb::UpdateRequest,
    ) -> ttrpc::Result<pb::UpdateResponse> {
        let ns = namespace(ctx)?;
        let i = req.info.into_option().unwrap_or_default();
        let d = digest("info.digest", &i.digest)?;
        let labels = i.labels.into_iter().collect();
        let r = blocking(|| {
            self.0
                .db
                .content()
                .update(&ns, &d, labels, &req.update_mask)
        })
        .map_err(status)?;
        Ok(pb::UpdateResponse {
            info: Some(info(r)).into(),
            ..Default::default()
        })
    }

    async fn list(
        &self,
        ctx: &TtrpcContext,
        _req: pb::ListContentRequest,
        sink: ServerStreamSender<pb::ListContentResponse>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let list = blocking(|| self.0.db.content().list(&ns)).map_err(status)?;
        // Batches keep each frame far below ttrpc's 4 MiB cap even with many labels.
        for chunk in list.chunks(100) {
            let msg = pb::ListContentResponse {
                info: chunk.iter().cloned().map(info).collect(),
                ..Default::default()
            };
            sink.send(&msg).await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: pb::DeleteContentRequest,
    ) -> ttrpc::Result<pb::DeleteContentResponse> {
        let ns = namespace(ctx)?;
        let d = digest("digest", &req.digest)?;
        blocking(|| self.0.db.content().delete(&ns, &d)).map_err(status)?;
        self.0.gc.request();
        Ok(pb::DeleteContentResponse::default())
    }

    async fn read(
        &self,
        ctx: &TtrpcContext,
        req: pb::ReadContentRequest,
        sink: ServerStreamSender<pb::ReadContentResponse>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let d = digest("digest", &req.digest)?;
        let offset = non_negative("offset", req.offset)?;
        let size = non_negative("size", req.size)?;
        let reader = blocking(|| -> ttrpc::Result<_> {
            self.0.db.content().get(&ns, &d).map_err(status)?;
            self.0.content.reader_at(&d).map_err(content_status)
        })?;
        if offset > reader.size() {
            return Err(invalid(format!(
                "{d}: read at offset {offset} is past the end ({} bytes)",
                reader.size()
            )));
        }
        let end = if size == 0 {
            reader.size()
        } else {
            reader.size().min(offset.saturating_add(size))
        };
        let mut at = offset;
        while at < end {
            let n = (end - at).min(MAX_CHUNK as u64);
            let data = blocking(|| reader.read_range(at, n)).map_err(content_status)?;
            if data.is_empty() {
                break;
            }
            let msg = pb::ReadContentResponse {
                offset: i64::try_from(at).unwrap_or(i64::MAX),
                data,
                ..Default::default()
            };
            sink.send(&msg).await?;
            at += n;
        }
        Ok(())
    }

    async fn status(
        &self,
        _ctx: &TtrpcContext,
        req: pb::StatusRequest,
    ) -> ttrpc::Result<pb::StatusResponse> {
        let s = blocking(|| self.0.content.status(&req.ref_)).map_err(content_status)?;
        Ok(pb::StatusResponse {
            status: Some(status_pb(s)).into(),
            ..Default::default()
        })
    }

    async fn list_statuses(
        &self,
        _ctx: &TtrpcContext,
        _req: pb::ListStatusesRequest,
    ) -> ttrpc::Result<pb::ListStatusesResponse> {
        let list = blocking(|| self.0.content.list_statuses()).map_err(content_status)?;
        Ok(pb::ListStatusesResponse {
            statuses: list.into_iter().map(status_pb).collect(),
            ..Default::default()
        })
    }

    async fn write(
        &self,
        ctx: &TtrpcContext,
        mut stream: ServerStream<pb::WriteContentResponse, pb::WriteContentRequest>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let lease = lease(ctx);
        let mut writer: Option<Writer> = None;
        while let Some(req) = stream.recv().await? {
            if req.data.len() > MAX_CHUNK {
                return Err(invalid(format!(
                    "write of {} bytes refused: at most {MAX_CHUNK} bytes per message",
                    req.data.len()
                )));
            }
            let expected = if req.expected.is_empty() {
                None
            } else {
                Some(digest("expected", &req.expected)?)
            };
            let total = non_negative("total", req.total)?;
            let w = match writer.as_mut() {
                Some(w) => w,
                None => {
                    if req.ref_.is_empty() {
                        return Err(invalid("the first Write message must carry a ref"));
                    }
                    let exp = expected.filter(|_| total > 0).map(|d| (d, total));
                    let w = blocking(|| self.0.content.writer(&req.ref_, exp))
                        .map_err(content_status)?;
                    writer.insert(w)
                }
            };
            let action = req
                .action
                .enum_value()
                .map_err(|v| invalid(format!("unknown write action {v}")))?;
            if !req.data.is_empty() {
                let offset = non_negative("offset", req.offset)?;
                blocking(|| w.write_at(offset, &req.data)).map_err(content_status)?;
            }
            match action {
                pb::WriteAction::STAT | pb::WriteAction::WRITE => {
                    let resp = self.write_response(w, action);
                    stream.send(&resp).await?;
                }
                pb::WriteAction::COMMIT => {
                    let w = writer.take().expect("set above");
                    let size = if total > 0 { total } else { w.offset() };
                    let d = expected.unwrap_or_else(|| w.digest());
                    let mut resp = self.write_response(&w, action);
                    let labels = req.labels.into_iter().collect();
                    let d = blocking(|| self.commit(&ns, lease.as_deref(), w, size, d, labels))?;
                    resp.digest = d.to_string();
                    stream.send(&resp).await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn abort(
        &self,
        _ctx: &TtrpcContext,
        req: pb::AbortRequest,
    ) -> ttrpc::Result<pb::AbortResponse> {
        blocking(|| self.0.content.abort(&req.ref_)).map_err(content_status)?;
        Ok(pb::AbortResponse::default())
    }
}
