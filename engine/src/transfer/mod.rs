//! The Transfer service: image import (archive → content store → metadata → snapshots),
//! export, and image views for `berthctl images mount`.
//!
//! Import order, so a crash at any point leaves nothing visible half-done: blobs are written
//! and verified first (unreferenced blobs are GC's); then, per image, every content record
//! (with its `gc.ref` labels) and the image record are written; then the layers are unpacked
//! into committed snapshots (each recorded after it is committed). An image whose unpack
//! failed stays listed (its content is complete) and is unpacked again by the next import or
//! `images mount`.


use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use ttrpc::r#async::{ServerStreamReceiver, ServerStreamSender, TtrpcContext};

use berth_api::proto::transfer as pb;
use berth_api::proto::transfer_ttrpc;
use crate::content::Digest;
use crate::images::{self, import::ImportOptions, Platform};
use crate::metadata::{Descriptor, Image};
use crate::snapshots::service::Snapshotters;
use crate::storage_api::{namespace, Storage};

use berth_api::MAX_CHUNK as CHUNK;

/// The service.
pub struct Service {
    /// Content store and metadata.
    pub storage: Arc<Storage>,
    /// Loaded snapshotters.
    pub snapshotters: Arc<Snapshotters>,
}

fn invalid(msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INVALID_ARGUMENT, msg.into()))
}

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

/// `os/arch[/variant]`; empty = linux/amd64.
pub fn parse_platform(text: &str) -> Result<Platform, String> {
    if text.is_empty() {
        return Ok(Platform::default());
    }
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() => {
            Ok(Platform::new(os, arch, Some(variant)))
        }
        _ => Err(format!(
            "platform {text:?}: expected os/arch or os/arch/variant"
        )),
    }
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

fn to_record(desc: &oci_spec::image::Descriptor) -> Result<Descriptor, ttrpc::Error> {
    let digest: Digest = desc
        .digest()
        .to_string()
        .parse()
        .map_err(|e| invalid(format!("{e}")))?;
    Ok(Descriptor {
        media_type: desc.media_type().to_string(),
        digest,
        size: desc.size(),
        annotations: desc
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    })
}

/// The blocking import: archive → store → records → unpack (also used by [`crate::preload`]).
pub(crate) fn import_blocking(
    storage: &Storage,
    snapshotters: &Snapshotters,
    ns: &str,
    archive: impl Read,
    snapshotter: &str,
    platform: &Platform,
    unpack: bool,
) -> Result<Vec<pb::ImportedImage>, ttrpc::Error> {
    let opts = ImportOptions {
        platform: platform.clone(),
    };
    let db = &storage.db;
    // containerd's discipline: everything the import creates belongs to a temporary lease
    // until the image records (and the unpacked chain's GC label) root it; a crash leaves
    // the lease, which expires, and GC then takes what no image references.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let lease = format!("import-{nanos}");
    let expires = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    db.leases()
        .create(
            ns,
            &lease,
            [("berth.lease/kind".to_string(), "import".to_string())]
                .into_iter()
                .collect(),
            Some(expires),
        )
        .map_err(|e| e.to_ttrpc())?;
    let result = import_leased(
        storage,
        snapshotters,
        ns,
        archive,
        snapshotter,
        platform,
        unpack,
        &opts,
        &lease,
    );
    if let Err(e) = db.leases().delete(ns, &lease) {
        tracing::warn!(
            lease,
            "cannot delete the import lease (it expires in an hour): {e}"
        );
    }
    result
}

#[allow(clippy::too_many_arguments)]
fn import_leased(
    storage: &Storage,
    snapshotters: &Snapshotters,
    ns: &str,
    archive: impl Read,
    snapshotter: &str,
    platform: &Platform,
    unpack: bool,
    opts: &ImportOptions,
    lease: &str,
) -> Result<Vec<pb::ImportedImage>, ttrpc::Error> {
    let db = &storage.db;
    let report = {
        // Blobs are written before their records: hold off the collector's blob sweep until
        // the records exist (and are on the lease).
        let _guard = db.resource_guard();
        let report = images::import::import_archive(&storage.content, archive, opts)
            .map_err(|e| invalid(format!("import: {}", crate::metadata::chain(&e))))?;
        let labels = images::import::document_labels(&storage.content, &report);
        for (digest, size) in &report.blobs {
            db.leases()
                .add_resource(ns, lease, &crate::metadata::LeaseResource::Content(*digest))
                .map_err(|e| e.to_ttrpc())?;
            let l = labels.get(digest).cloned().unwrap_or_default();
            db.content()
                .put_record(ns, *digest, *size, l)
                .map_err(|e| e.to_ttrpc())?;
        }
        report
    };
    // Unpacking takes the resource guard per snapshot itself.
    import_images(
        storage,
        snapshotters,
        ns,
        snapshotter,
        platform,
        unpack,
        &report,
        lease,
    )
}

#[allow(clippy::too_many_arguments)]
fn import_images(
    storage: &Storage,
    snapshotters: &Snapshotters,
    ns: &str,
    snapshotter: &str,
    platform: &Platform,
    unpack: bool,
    report: &images::import::ImportReport,
    lease: &str,
) -> Result<Vec<pb::ImportedImage>, ttrpc::Error> {
    let db = &storage.db;
    let sn = if unpack {
        let id = if snapshotter.is_empty() {
            snapshotters.default_id().unwrap_or("").to_string()
        } else {
            snapshotter.to_string()
        };
        let found = snapshotters
            .lookup(&id)
            .ok_or_else(|| invalid(format!("snapshotter {id:?} is not loaded")))?;
        Some((id, found))
    } else {
        None
    };
    let mut out = Vec::new();
    for imported in &report.images {
        let target = to_record(&imported.target)?;
        let name = imported
            .name
            .clone()
            .unwrap_or_else(|| format!("import-{}", target.digest));
        let mut image = Image::new(name.clone(), target.clone(), Default::default());
        image = match db.images().create(ns, image.clone()) {
            Ok(i) => i,
            Err(crate::metadata::Error::AlreadyExists { .. }) => {
                image.created_at = std::time::SystemTime::now();
                db.images()
                    .update(ns, image, &["target".to_string()])
                    .map_err(|e| e.to_ttrpc())?
            }
            Err(e) => return Err(e.to_ttrpc()),
        };
        let mut entry = pb::ImportedImage {
            name: image.name.clone(),
            media_type: target.media_type.clone(),
            digest: target.digest.to_string(),
            size: target.size as i64,
            ..Default::default()
        };
        if let Some((id, sn)) = &sn {
            let resolved = images::resolve(storage.content.as_ref(), &imported.target, platform)
                .map_err(|e| invalid(format!("{name}: {}", crate::metadata::chain(&e))))?;
            let unpacked = crate::unpack::unpack(
                db,
                &storage.content,
                ns,
                id,
                sn.as_ref(),
                &resolved,
                Some(lease),
            )
            .map_err(|e| {
                status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!("{name}: unpack: {}", crate::metadata::chain(&e)),
                )
            })?;
            entry.chain_id = unpacked.chain_id.map(|c| c.to_string()).unwrap_or_default();
            entry.layers_applied = unpacked.applied as i64;
            entry.layers_reused = unpacked.reused as i64;
        }
        out.push(entry);
    }
    Ok(out)
}

#[async_trait]
impl transfer_ttrpc::Transfer for Service {
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
        let platform = parse_platform(&first.platform).map_err(invalid)?;
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
            let result = import_blocking(
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
            .map_err(|e| status(ttrpc::Code::INTERNAL, format!("import task: {e}")))??;
        Ok(pb::ImportResponse {
            images,
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
        if req.names.is_empty() {
            return Err(invalid("export: no image names"));
        }
        let mut list = Vec::new();
        for name in &req.names {
            let image = self
                .storage
                .db
                .images()
                .get(&ns, name)
                .map_err(|e| e.to_ttrpc())?;
            let target = images::descriptor(
                &image.target.media_type,
                &image.target.digest,
                image.target.size,
            );
            list.push(images::export::ExportImage {
                name: name.clone(),
                target,
            });
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let storage = self.storage.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let writer = ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let mut writer = std::io::BufWriter::with_capacity(CHUNK, writer);
            let stats = images::export::export_oci(
                &storage.content,
                &list,
                &Platform::default(),
                &mut writer,
            );
            let flushed = std::io::Write::flush(&mut writer);
            stats
                .map_err(|e| e.to_string())
                .and_then(|s| flushed.map(|_| s).map_err(|e| e.to_string()))
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
            .map_err(|e| status(ttrpc::Code::INTERNAL, format!("export task: {e}")))?
            .map_err(|e| status(ttrpc::Code::FAILED_PRECONDITION, format!("export: {e}")))?;
        Ok(())
    }

    async fn view(
        &self,
        ctx: &TtrpcContext,
        req: pb::ViewRequest,
    ) -> ttrpc::Result<pb::ViewResponse> {
        let ns = namespace(ctx)?;
        if req.key.is_empty() {
            return Err(invalid("view: empty snapshot key"));
        }
        let platform = parse_platform(&req.platform).map_err(invalid)?;
        let image = self
            .storage
            .db
            .images()
            .get(&ns, &req.name)
            .map_err(|e| e.to_ttrpc())?;
        let id = if req.snapshotter.is_empty() {
            self.snapshotters.default_id().unwrap_or("").to_string()
        } else {
            req.snapshotter.clone()
        };
        let sn = self
            .snapshotters
            .lookup(&id)
            .ok_or_else(|| invalid(format!("snapshotter {id:?} is not loaded")))?;
        let storage = self.storage.clone();
        let key = req.key.clone();
        tokio::task::spawn_blocking(move || {
            let target = images::descriptor(
                &image.target.media_type,
                &image.target.digest,
                image.target.size,
            );
            let resolved =
                images::resolve(storage.content.as_ref(), &target, &platform).map_err(|e| {
                    status(
                        ttrpc::Code::FAILED_PRECONDITION,
                        format!("{}: {}", image.name, crate::metadata::chain(&e)),
                    )
                })?;
            let unpacked = crate::unpack::unpack(
                &storage.db,
                &storage.content,
                &ns,
                &id,
                sn.as_ref(),
                &resolved,
                None,
            )
            .map_err(|e| {
                status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!("{}: unpack: {}", image.name, crate::metadata::chain(&e)),
                )
            })?;
            let parent = unpacked
                .chain_id
                .map(|c| crate::unpack::backend_name(&ns, &c))
                .unwrap_or_default();
            let mounts = sn
                .view(&format!("{ns}/{key}"), &parent, BTreeMap::new())
                .map_err(|e| status(e.ttrpc_code(), format!("view {key}: {e}")))?;
            Ok(pb::ViewResponse {
                mounts: mounts
                    .into_iter()
                    .map(|m| pb::Mount {
                        type_: m.fs_type,
                        source: m.source,
                        options: m.options,
                        ..Default::default()
                    })
                    .collect(),
                chain_id: unpacked.chain_id.map(|c| c.to_string()).unwrap_or_default(),
                ..Default::default()
            })
        })
        .await
        .map_err(|e| status(ttrpc::Code::INTERNAL, format!("view task: {e}")))?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        assert_eq!(parse_platform("").unwrap(), Platform::default());
        assert_eq!(
            parse_platform("linux/arm64/v8").unwrap(),
            Platform::new("linux", "arm64", Some("v8"))
        );
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("/amd64").is_err());
    }

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
