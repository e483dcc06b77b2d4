//! `berth.services.content.v1.Content`: blobs through the namespace's records, over
//! [`Store`]'s content operations (reads check the namespace's record first; a committed
//! write records the blob in the namespace and on the request's lease).

use std::sync::Arc;

use async_trait::async_trait;
use berth_api::errdefs::{self, invalid};
use berth_api::proto::{content as pb, content_ttrpc};
use berth_api::time::nanos;
use berth_api::MAX_CHUNK;
use berth_engine::content::{Digest, IngestManager, Writer};
use berth_engine::metadata::ContentRecord;
use berth_engine::store::Store;
use ttrpc::r#async::{ServerStream, ServerStreamSender, TtrpcContext};

use super::{blocking, lease, namespace};

/// `berth.services.content.v1.Content`.
pub struct ContentService(pub Arc<Store>);

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

fn status_pb(s: berth_engine::content::Status) -> pb::Status {
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

/// Parses a digest from a request field.
pub(crate) fn digest(field: &str, s: &str) -> ttrpc::Result<Digest> {
    s.parse()
        .map_err(|e: berth_engine::content::DigestError| invalid(format!("{field}: {e}")))
}

fn non_negative(field: &str, n: i64) -> ttrpc::Result<u64> {
    u64::try_from(n).map_err(|_| invalid(format!("{field} must not be negative, got {n}")))
}

fn write_response(w: &Writer, action: pb::WriteAction) -> pb::WriteContentResponse {
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

#[async_trait]
impl content_ttrpc::Content for ContentService {
    async fn info(
        &self,
        ctx: &TtrpcContext,
        req: pb::InfoRequest,
    ) -> ttrpc::Result<pb::InfoResponse> {
        let ns = namespace(ctx)?;
        let d = digest("digest", &req.digest)?;
        let r = blocking(|| self.0.db.content().get(&ns, &d)).map_err(|e| errdefs::status(&e))?;
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
        .map_err(|e| errdefs::status(&e))?;
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
        let list = blocking(|| self.0.db.content().list(&ns)).map_err(|e| errdefs::status(&e))?;
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
        blocking(|| self.0.delete_content(&ns, &d)).map_err(|e| errdefs::status(&e))?;
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
        let reader = blocking(|| self.0.reader(&ns, &d)).map_err(|e| errdefs::status(&e))?;
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
            let data = blocking(|| reader.read_range(at, n)).map_err(|e| errdefs::status(&e))?;
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
        let s = blocking(|| self.0.content.status(&req.ref_)).map_err(|e| errdefs::status(&e))?;
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
        let list = blocking(|| self.0.content.list_statuses()).map_err(|e| errdefs::status(&e))?;
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
                    let w = blocking(|| self.0.writer(&req.ref_, exp))
                        .map_err(|e| errdefs::status(&e))?;
                    writer.insert(w)
                }
            };
            let action = req
                .action
                .enum_value()
                .map_err(|v| invalid(format!("unknown write action {v}")))?;
            if !req.data.is_empty() {
                let offset = non_negative("offset", req.offset)?;
                blocking(|| w.write_at(offset, &req.data)).map_err(|e| errdefs::status(&e))?;
            }
            match action {
                pb::WriteAction::STAT | pb::WriteAction::WRITE => {
                    let resp = write_response(w, action);
                    stream.send(&resp).await?;
                }
                pb::WriteAction::COMMIT => {
                    let w = writer.take().expect("set above");
                    let size = if total > 0 { total } else { w.offset() };
                    let d = expected.unwrap_or_else(|| w.digest());
                    let mut resp = write_response(&w, action);
                    let labels = req.labels.into_iter().collect();
                    let d = blocking(|| self.0.commit(&ns, lease.as_deref(), w, size, d, labels))
                        .map_err(|e| errdefs::status(&e))?;
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
        blocking(|| self.0.content.abort(&req.ref_)).map_err(|e| errdefs::status(&e))?;
        Ok(pb::AbortResponse::default())
    }
}
