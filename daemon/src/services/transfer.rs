//! `berth.services.transfer.v1.Transfer`: image import from a client's stream, export to
//! one, and image views for `berthctl images mount`, over [`berth_engine::transfer`]. The
//! core works on blocking `Read`/`Write`; this adapter bridges them to the ttrpc streams with
//! a channel each way.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use berth_api::errdefs::{self, invalid};
use berth_api::proto::{transfer as pb, transfer_ttrpc};
use berth_api::MAX_CHUNK as CHUNK;
use berth_engine::snapshots::Snapshotters;
use berth_engine::store::Store;
use berth_engine::transfer::{self, Imported};
use ttrpc::r#async::{ServerStreamReceiver, ServerStreamSender, TtrpcContext};

use super::{namespace, spawn_blocking};

/// `berth.services.transfer.v1.Transfer`.
pub struct TransferService {
    /// Content store and metadata.
    pub storage: Arc<Store>,
    /// Loaded snapshotters.
    pub snapshotters: Arc<Snapshotters>,
}

/// A blocking `Read` over chunks arriving on a channel (the import runs on a blocking thread
/// while the async side receives the stream).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A `Write` that sends full chunks down a channel (blocking; used on a blocking thread).
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

fn imported_pb(i: Imported) -> pb::ImportedImage {
    pb::ImportedImage {
        name: i.name,
        media_type: i.target.media_type,
        digest: i.target.digest.to_string(),
        size: i.target.size as i64,
        chain_id: i.chain_id.map(|c| c.to_string()).unwrap_or_default(),
        layers_applied: i.layers_applied as i64,
        layers_reused: i.layers_reused as i64,
        ..Default::default()
    }
}

#[async_trait]
impl transfer_ttrpc::Transfer for TransferService {
    async fn import(
        &self,
        ctx: &TtrpcContext,
        mut stream: ServerStreamReceiver<pb::ImportChunk>,
    ) -> ttrpc::Result<pb::ImportResponse> {
        let started = Instant::now();
        let ns = namespace(ctx)?;
        let Some(first) = stream.recv().await? else {
            return Err(invalid("import: empty stream"));
        };
        let platform = transfer::parse_platform(&first.platform).map_err(invalid)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let storage = self.storage.clone();
        let snapshotters = self.snapshotters.clone();
        let snapshotter = first.snapshotter.clone();
        let unpack = !first.no_unpack;
        let worker = tokio::task::spawn_blocking(move || {
            let reader = ChannelReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            };
            let result = transfer::import_blocking(
                &storage,
                &snapshotters,
                &ns,
                reader,
                &snapshotter,
                &platform,
                unpack,
            );
            if result.is_ok() {
                storage.gc.request();
            }
            result
        });
        let mut bytes = first.data.len() as i64;
        let mut sender_open = tx.send(first.data).await.is_ok();
        while let Some(chunk) = stream.recv().await? {
            bytes += chunk.data.len() as i64;
            if sender_open && tx.send(chunk.data).await.is_err() {
                // The importer stopped early (an error); keep draining the stream.
                sender_open = false;
            }
        }
        drop(tx);
        let images = worker
            .await
            .map_err(|e| errdefs::to_ttrpc(errdefs::Kind::Internal, format!("import task: {e}")))?
            .map_err(|e| errdefs::status(&e))?;
        Ok(pb::ImportResponse {
            images: images.into_iter().map(imported_pb).collect(),
            bytes,
            millis: started.elapsed().as_millis() as i64,
            ..Default::default()
        })
    }

    async fn export(
        &self,
        ctx: &TtrpcContext,
        req: pb::ExportRequest,
        sink: ServerStreamSender<pb::ExportChunk>,
    ) -> ttrpc::Result<()> {
        let ns = namespace(ctx)?;
        let list = transfer::export_list(&self.storage, &ns, &req.names)
            .map_err(|e| errdefs::status(&e))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let storage = self.storage.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let writer = ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let mut writer = std::io::BufWriter::with_capacity(CHUNK, writer);
            transfer::export(&storage, &list, &mut writer)
        });
        while let Some(data) = rx.recv().await {
            sink.send(&pb::ExportChunk {
                data,
                ..Default::default()
            })
            .await?;
        }
        worker
            .await
            .map_err(|e| errdefs::to_ttrpc(errdefs::Kind::Internal, format!("export task: {e}")))?
            .map_err(|e| errdefs::status(&e))?;
        Ok(())
    }

    async fn view(
        &self,
        ctx: &TtrpcContext,
        req: pb::ViewRequest,
    ) -> ttrpc::Result<pb::ViewResponse> {
        let ns = namespace(ctx)?;
        let (storage, snapshotters) = (self.storage.clone(), self.snapshotters.clone());
        let v = spawn_blocking("view task", move || {
            transfer::view(
                &storage,
                &snapshotters,
                &ns,
                &req.name,
                &req.key,
                &req.platform,
                &req.snapshotter,
            )
        })
        .await?
        .map_err(|e| errdefs::status(&e))?;
        Ok(pb::ViewResponse {
            mounts: v
                .mounts
                .into_iter()
                .map(|m| pb::Mount {
                    type_: m.fs_type,
                    source: m.source,
                    options: m.options,
                    ..Default::default()
                })
                .collect(),
            chain_id: v.chain_id.map(|c| c.to_string()).unwrap_or_default(),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_reader_joins_chunks() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(b"hello ".to_vec()).unwrap();
        tx.try_send(Vec::new()).unwrap();
        tx.try_send(b"world".to_vec()).unwrap();
        drop(tx);
        let mut reader = ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        };
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "hello world");
    }
}
