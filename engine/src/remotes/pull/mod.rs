//! The pull pipeline: reference → endpoints → manifest (or index, with platform selection)
//! → config and layers into the content store → image record → unpacked snapshots.
//!
//! - Everything written belongs to a temporary lease until the image record and the unpacked
//!   chain's GC label root it (the same discipline as import, see [`crate::transfer`]); a
//!   crash leaves a lease that expires and GC takes what nothing references.
//! - Layers download in parallel (at most [`PullOptions::max_concurrent_downloads`]), each into
//!   a resumable ingest named after its digest, so an interrupted pull continues where it
//!   stopped (a `Range` request from the ingest's offset), and each blob is hashed as it
//!   streams and committed only if its digest matches.
//! - Unpacking runs beside the downloads: layer N is applied as soon as it and layers
//!   0..N-1 are in the store and unpacked, instead of after the last download.
//! - A layer two concurrent pulls both need is downloaded once: a per-digest in-flight lock
//!   makes the second wait and then find the blob committed.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc::UnboundedSender;

use super::auth::Credentials;
use super::client::{ClientError, ClientOptions, RegistryClient};
use super::RegistryHost;
use crate::content::{Digest, IngestManager, Ingester, Manager};
use crate::images::{self, media, Platform, ResolvedImage};
use crate::metadata::{Image, LeaseResource};
use crate::snapshots::Snapshotters;
use crate::store::Store;

mod configured;
mod error;

pub use configured::{Planned, PullRequest, Puller};
pub use error::PullError;

/// Default number of layers downloaded at once.
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;

/// A parsed image reference, normalised like docker (`busybox` →
/// `docker.io/library/busybox:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The full normalised name: the image record's name.
    pub name: String,
    /// `docker.io`, `registry.local:5000`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The digest, if any (it wins over the tag for fetching).
    pub digest: Option<Digest>,
}

impl FromStr for ImageRef {
    type Err = PullError;

    /// Docker's normalisation and validation are [`super::hosts::parse_reference`]'s (the
    /// same rules `berthctl hosts resolve` shows); this adds the parsed digest and the
    /// normalised record name.
    fn from_str(input: &str) -> Result<Self, PullError> {
        let bad = |reason: String| PullError::Reference {
            reference: input.to_string(),
            reason,
        };
        if input.is_empty() || input.contains(char::is_whitespace) {
            return Err(bad("empty or contains whitespace".into()));
        }
        let n = super::hosts::parse_reference(input).map_err(|e| match e {
            super::hosts::HostsError::BadReference { reason, .. } => bad(reason),
            other => bad(other.to_string()),
        })?;
        let digest = n
            .digest
            .as_deref()
            .map(|d| d.parse::<Digest>().map_err(|e| bad(format!("digest: {e}"))))
            .transpose()?;
        // A reference with a digest and no tag gets no `latest` (parse_reference adds it only
        // when neither is given).
        let mut name = format!("{}/{}", n.registry, n.repository);
        if let Some(t) = &n.tag {
            name.push(':');
            name.push_str(t);
        }
        if let Some(d) = &n.digest {
            name.push('@');
            name.push_str(d);
        }
        Ok(ImageRef {
            name,
            registry: n.registry,
            repository: n.repository,
            tag: n.tag,
            digest,
        })
    }
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to select from an index.
    pub platform: Platform,
    /// Snapshotter to unpack into (`""`: the default); `None`: do not unpack.
    pub snapshotter: Option<String>,
    /// Layers downloaded at once (at least 1).
    pub max_concurrent_downloads: usize,
    /// Client timeouts and CA bundle.
    pub client: ClientOptions,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: Platform::default(),
            snapshotter: Some(String::new()),
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
            client: ClientOptions::default(),
        }
    }
}

/// State of one blob of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobState {
    /// Queued (waiting for a download slot or for a concurrent pull of the same blob).
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// Committed to the content store, digest verified.
    Done,
    /// Already in the content store: not downloaded.
    Exists,
    /// Applied into a snapshot (layers only).
    Unpacked,
}

impl BlobState {
    /// Lower-case name for output.
    pub fn as_str(self) -> &'static str {
        match self {
            BlobState::Waiting => "waiting",
            BlobState::Downloading => "downloading",
            BlobState::Done => "done",
            BlobState::Exists => "exists",
            BlobState::Unpacked => "unpacked",
        }
    }
}

/// One progress update.
#[derive(Debug, Clone)]
pub struct Progress {
    /// `index`, `manifest`, `config` or `layer`.
    pub kind: &'static str,
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Bytes in the store so far.
    pub offset: u64,
    /// Which endpoint is delivering it (API root), empty when none.
    pub endpoint: String,
    /// Its state.
    pub state: BlobState,
}

/// What a pull did.
#[derive(Debug, Clone, Default)]
pub struct PullReport {
    /// The image record's name.
    pub name: String,
    /// What it points at.
    pub target: Option<crate::metadata::Descriptor>,
    /// Layer bytes downloaded now.
    pub downloaded: u64,
    /// Layers downloaded now / already present.
    pub layers_fetched: usize,
    /// Layers that were in the store already.
    pub layers_present: usize,
    /// Top chain ID when unpacked.
    pub chain_id: Option<Digest>,
    /// Layers applied / reused by the unpack.
    pub layers_applied: usize,
    /// Layers whose snapshot existed already.
    pub layers_reused: usize,
    /// The client's request log (each endpoint tried, outcome, duration).
    pub attempts: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Per-digest locks shared by every pull in this process: a blob is downloaded by one pull
/// at a time, and the others then find it committed.
fn inflight(digest: &Digest) -> Arc<tokio::sync::Mutex<()>> {
    static MAP: OnceLock<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let mut map = MAP
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // Drop entries nobody holds, so the map stays small.
    map.retain(|_, m| Arc::strong_count(m) > 1);
    map.entry(*digest).or_default().clone()
}

/// The ingest ref of a pulled blob: stable, so a later pull resumes it.
fn ingest_ref(digest: &Digest) -> String {
    format!("pull-{digest}")
}

struct Ctx {
    storage: Arc<Store>,
    ns: String,
    lease: String,
    reference: String,
    progress: Option<UnboundedSender<Progress>>,
}

impl Ctx {
    fn storage_err(&self, what: impl std::fmt::Display) -> PullError {
        PullError::Storage {
            reference: self.reference.clone(),
            what: what.to_string(),
        }
    }

    fn send(&self, p: Progress) {
        if let Some(tx) = &self.progress {
            let _ = tx.send(p);
        }
    }

    /// Stores a fetched document (manifest, index, config) and records it, with its
    /// `gc.ref` labels, on the lease.
    fn store_document(
        &self,
        desc: &oci_spec::image::Descriptor,
        bytes: &[u8],
    ) -> Result<(), PullError> {
        let digest =
            images::descriptor_digest(desc, "the registry").map_err(|e| self.storage_err(e))?;
        let labels = images::gc_ref_labels(desc, bytes).unwrap_or_default();
        let store = &self.storage.content;
        let db = &self.storage.db;
        let _guard = db.resource_guard();
        if store.info(&digest).is_err() {
            let reference = ingest_ref(&digest);
            let mut w = store
                .writer(&reference, Some((digest, bytes.len() as u64)))
                .map_err(|e| {
                    self.storage_err(format!(
                        "ingest {digest}: {}",
                        berth_api::errdefs::chain(&e)
                    ))
                })?;
            if w.offset() != 0 {
                drop(w);
                let _ = store.abort(&reference);
                w = store
                    .writer(&reference, Some((digest, bytes.len() as u64)))
                    .map_err(|e| {
                        self.storage_err(format!(
                            "ingest {digest}: {}",
                            berth_api::errdefs::chain(&e)
                        ))
                    })?;
            }
            w.write(bytes).map_err(|e| {
                self.storage_err(format!(
                    "ingest {digest}: {}",
                    berth_api::errdefs::chain(&e)
                ))
            })?;
            match w.commit(bytes.len() as u64, digest) {
                Ok(_) | Err(crate::content::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    return Err(self.storage_err(format!(
                        "commit {digest}: {}",
                        berth_api::errdefs::chain(&e)
                    )))
                }
            }
        }
        self.record(digest, bytes.len() as u64, labels)
    }

    /// Adds a committed blob to the lease and records it (caller holds the resource guard
    /// or the blob is otherwise safe from the sweep).
    fn record(
        &self,
        digest: Digest,
        size: u64,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<(), PullError> {
        let db = &self.storage.db;
        db.leases()
            .add_resource(&self.ns, &self.lease, &LeaseResource::Content(digest))
            .map_err(|e| self.storage_err(format!("lease {}: {e}", self.lease)))?;
        db.content()
            .put_record(&self.ns, digest, size, labels)
            .map_err(|e| self.storage_err(format!("content record {digest}: {e}")))?;
        Ok(())
    }
}

/// The media type of a fetched manifest document: the registry's `Content-Type` when it is
/// an image type, else the document's own `mediaType`, else by shape.
fn document_media_type(content_type: &str, bytes: &[u8]) -> String {
    if media::is_manifest(content_type) || media::is_index(content_type) {
        return content_type.to_string();
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType", default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(mt),
            ..
        }) => mt,
        Ok(Probe {
            manifests: Some(_), ..
        }) => media::OCI_INDEX.to_string(),
        _ => media::OCI_MANIFEST.to_string(),
    }
}

/// Pulls `reference` from `hosts` (tried in order) into namespace `ns`: content, image
/// record, and (unless `opts.snapshotter` is `None`) unpacked snapshots.
#[allow(clippy::too_many_arguments)]
pub async fn pull(
    storage: Arc<Store>,
    snapshotters: Arc<Snapshotters>,
    ns: &str,
    reference: &str,
    hosts: &[RegistryHost],
    credentials: Arc<Credentials>,
    opts: PullOptions,
    progress: Option<UnboundedSender<Progress>>,
) -> Result<PullReport, PullError> {
    let started = Instant::now();
    let image_ref: ImageRef = reference.parse()?;
    let sn = match &opts.snapshotter {
        None => None,
        Some(id) => {
            let id = if id.is_empty() {
                snapshotters.default_id().unwrap_or("").to_string()
            } else {
                id.clone()
            };
            let found = snapshotters.lookup(&id).ok_or_else(|| PullError::Image {
                reference: image_ref.name.clone(),
                what: format!("snapshotter {id:?} is not loaded"),
            })?;
            Some((id, found))
        }
    };
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let ctx = Arc::new(Ctx {
        storage: storage.clone(),
        ns: ns.to_string(),
        lease: format!("pull-{nanos}"),
        reference: image_ref.name.clone(),
        progress,
    });
    storage
        .db
        .leases()
        .create(
            ns,
            &ctx.lease,
            [("berth.lease/kind".to_string(), "pull".to_string())]
                .into_iter()
                .collect(),
            Some(SystemTime::now() + Duration::from_secs(3600)),
        )
        .map_err(|e| ctx.storage_err(format!("create lease: {e}")))?;
    let client = RegistryClient::new(
        hosts,
        &image_ref.repository,
        credentials,
        opts.client.clone(),
    )
    .map_err(|source| PullError::Fetch {
        reference: image_ref.name.clone(),
        source,
    });
    let result = match client {
        Ok(client) => {
            let client = Arc::new(client);
            pull_leased(&ctx, sn, &image_ref, &client, &opts)
                .await
                .map(|mut r| {
                    r.attempts = client.attempts();
                    r
                })
        }
        Err(e) => Err(e),
    };
    if let Err(e) = storage.db.leases().delete(ns, &ctx.lease) {
        tracing::warn!(lease = %ctx.lease, "cannot delete the pull lease (it expires in an hour): {e}");
    }
    if result.is_ok() {
        storage.gc.request();
    }
    result.map(|mut r| {
        r.elapsed = started.elapsed();
        r
    })
}

type Sn = Option<(String, Arc<dyn crate::snapshots::Snapshotter>)>;

async fn pull_leased(
    ctx: &Arc<Ctx>,
    sn: Sn,
    image_ref: &ImageRef,
    client: &Arc<RegistryClient>,
    opts: &PullOptions,
) -> Result<PullReport, PullError> {
    let fetch_err = |source| PullError::Fetch {
        reference: image_ref.name.clone(),
        source,
    };
    // 1. The target: by digest when the reference has one, else by tag.
    let target_ref = match (&image_ref.digest, &image_ref.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let fetched = client
        .fetch_manifest(&target_ref)
        .await
        .map_err(fetch_err)?;
    let mt = document_media_type(&fetched.media_type, &fetched.bytes);
    let target = images::descriptor(&mt, &fetched.digest, fetched.bytes.len() as u64);
    ctx.send(Progress {
        kind: if media::is_index(&mt) {
            "index"
        } else {
            "manifest"
        },
        digest: fetched.digest,
        size: fetched.bytes.len() as u64,
        offset: fetched.bytes.len() as u64,
        endpoint: fetched.endpoint.clone(),
        state: BlobState::Done,
    });
    ctx.store_document(&target, &fetched.bytes)?;

    // 2. Follow it for the platform, fetching each document the resolver finds missing.
    let resolved: ResolvedImage = {
        let mut rounds = 0;
        loop {
            match images::resolve(ctx.storage.content.as_ref(), &target, &opts.platform) {
                Ok(r) => break r,
                Err(images::Error::Missing { what, digest, .. }) if rounds < 16 => {
                    rounds += 1;
                    let (kind, f) = if what == "config" {
                        (
                            "config",
                            client.fetch_blob_bytes(&digest).await.map_err(fetch_err)?,
                        )
                    } else {
                        (
                            "manifest",
                            client
                                .fetch_manifest(&digest.to_string())
                                .await
                                .map_err(fetch_err)?,
                        )
                    };
                    let mt = if kind == "config" {
                        media::OCI_CONFIG.to_string()
                    } else {
                        document_media_type(&f.media_type, &f.bytes)
                    };
                    let desc = images::descriptor(&mt, &f.digest, f.bytes.len() as u64);
                    ctx.send(Progress {
                        kind,
                        digest: f.digest,
                        size: f.bytes.len() as u64,
                        offset: f.bytes.len() as u64,
                        endpoint: f.endpoint.clone(),
                        state: BlobState::Done,
                    });
                    ctx.store_document(&desc, &f.bytes)?;
                }
                Err(e) => {
                    return Err(PullError::Image {
                        reference: image_ref.name.clone(),
                        what: berth_api::errdefs::chain(&e),
                    })
                }
            }
        }
    };

    // 3. Layers in parallel; the unpacker follows in order.
    let semaphore = Arc::new(tokio::sync::Semaphore::new(
        opts.max_concurrent_downloads.max(1),
    ));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<usize>();
    let unpacker = sn.map(|(id, sn)| {
        let ctx = ctx.clone();
        let image = resolved.clone();
        tokio::task::spawn_blocking(move || {
            unpack_as_ready(&ctx, &id, sn.as_ref(), &image, done_rx)
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, layer) in resolved.layers.iter().enumerate() {
        ctx.send(Progress {
            kind: "layer",
            digest: layer.digest,
            size: layer.size,
            offset: 0,
            endpoint: String::new(),
            state: BlobState::Waiting,
        });
        let ctx = ctx.clone();
        let semaphore = semaphore.clone();
        let digest = layer.digest;
        let size = layer.size;
        let done_tx = done_tx.clone();
        let fetch = fetch_layer(ctx, semaphore, digest, size, client.clone());
        tasks.spawn(async move {
            let r = fetch.await;
            if r.is_ok() {
                let _ = done_tx.send(i);
            }
            r
        });
    }
    drop(done_tx);
    let mut report = PullReport {
        name: image_ref.name.clone(),
        ..Default::default()
    };
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(Some(bytes))) => {
                report.layers_fetched += 1;
                report.downloaded += bytes;
            }
            Ok(Ok(None)) => report.layers_present += 1,
            Ok(Err(e)) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    // Stop the other downloads: their ingests stay resumable.
                    tasks.abort_all();
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_err.get_or_insert(ctx.storage_err(format!("download task: {e}")));
            }
        }
    }
    let unpacked = match unpacker {
        Some(h) => Some(
            h.await
                .map_err(|e| ctx.storage_err(format!("unpack task: {e}")))?,
        ),
        None => None,
    };
    if let Some(e) = first_err {
        return Err(e);
    }
    // 4. The image record: everything it references is in the store now.
    let target_record = crate::metadata::Descriptor {
        media_type: mt.clone(),
        digest: fetched.digest,
        size: fetched.bytes.len() as u64,
        annotations: Default::default(),
    };
    let db = &ctx.storage.db;
    let mut image = Image::new(
        image_ref.name.clone(),
        target_record.clone(),
        Default::default(),
    );
    match db.images().create(&ctx.ns, image.clone()) {
        Ok(_) => {}
        Err(crate::metadata::Error::AlreadyExists { .. }) => {
            image.created_at = SystemTime::now();
            db.images()
                .update(&ctx.ns, image, &["target".to_string()])
                .map_err(|e| ctx.storage_err(format!("image record: {e}")))?;
        }
        Err(e) => return Err(ctx.storage_err(format!("image record: {e}"))),
    }
    report.target = Some(target_record);
    if let Some(u) = unpacked {
        let u = u.map_err(|source| PullError::Unpack {
            reference: image_ref.name.clone(),
            source,
        })?;
        report.chain_id = u.chain_id;
        report.layers_applied = u.applied;
        report.layers_reused = u.reused;
    }
    Ok(report)
}

/// Downloads one layer unless present. `Some(bytes)` when downloaded now.
async fn fetch_layer(
    ctx: Arc<Ctx>,
    semaphore: Arc<tokio::sync::Semaphore>,
    digest: Digest,
    size: u64,
    client: Arc<RegistryClient>,
) -> Result<Option<u64>, PullError> {
    {
        let _permit = semaphore
            .acquire_owned()
            .await
            .map_err(|e| ctx.storage_err(format!("download slot: {e}")))?;
        let lock = inflight(&digest);
        let _held = lock.lock().await;
        let store = ctx.storage.content.clone();
        let present = |ctx: &Ctx| -> Result<bool, PullError> {
            match store.info(&digest) {
                Ok(info) if info.size == size => {
                    let _guard = ctx.storage.db.resource_guard();
                    ctx.record(digest, size, Default::default())?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        if present(&ctx)? {
            ctx.send(Progress {
                kind: "layer",
                digest,
                size,
                offset: size,
                endpoint: String::new(),
                state: BlobState::Exists,
            });
            return Ok(None);
        }
        let reference = ingest_ref(&digest);
        let open =
            |store: &crate::content::LocalStore| store.writer(&reference, Some((digest, size)));
        let mut writer = match open(&store) {
            Ok(w) => w,
            // An ingest left with other expectations (a different size recorded): start over.
            Err(crate::content::Error::InvalidArgument(_)) => {
                let _ = store.abort(&reference);
                open(&store).map_err(|e| {
                    ctx.storage_err(format!(
                        "ingest {digest}: {}",
                        berth_api::errdefs::chain(&e)
                    ))
                })?
            }
            Err(e) => {
                return Err(ctx.storage_err(format!(
                    "ingest {digest}: {}",
                    berth_api::errdefs::chain(&e)
                )))
            }
        };
        let resumed_at = writer.offset();
        ctx.send(Progress {
            kind: "layer",
            digest,
            size,
            offset: resumed_at,
            endpoint: String::new(),
            state: BlobState::Downloading,
        });
        let pctx = ctx.clone();
        let mut last = Instant::now() - Duration::from_secs(1);
        let mut on_progress = move |offset: u64, endpoint: &str| {
            // At most ~10 updates a second per layer, plus the last one.
            if offset == size || last.elapsed() >= Duration::from_millis(100) {
                last = Instant::now();
                pctx.send(Progress {
                    kind: "layer",
                    digest,
                    size,
                    offset,
                    endpoint: endpoint.to_string(),
                    state: BlobState::Downloading,
                });
            }
        };
        let endpoint = match client
            .fetch_blob(&digest, size, &mut writer, &mut on_progress)
            .await
        {
            Ok(ep) => ep,
            Err(e) => {
                let mismatch = matches!(&e, ClientError::AllFailed { attempts, .. }
                    if attempts.last().is_some_and(|a| a.to_string().contains("digest mismatch")));
                drop(writer);
                if mismatch {
                    // Wrong bytes are useless to resume from.
                    let _ = store.abort(&reference);
                }
                return Err(PullError::Fetch {
                    reference: ctx.reference.clone(),
                    source: e,
                });
            }
        };
        {
            let _guard = ctx.storage.db.resource_guard();
            match writer.commit(size, digest) {
                Ok(_) | Err(crate::content::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    let _ = store.abort(&reference);
                    return Err(ctx.storage_err(format!(
                        "commit {digest}: {}",
                        berth_api::errdefs::chain(&e)
                    )));
                }
            }
            ctx.record(digest, size, Default::default())?;
        }
        ctx.send(Progress {
            kind: "layer",
            digest,
            size,
            offset: size,
            endpoint,
            state: BlobState::Done,
        });
        Ok(Some(size - resumed_at))
    }
}

/// Unpacks layers in order as their downloads complete: after layer i arrives and layers
/// 0..i are unpacked, the image truncated to layers 0..=i is unpacked (which applies only
/// layer i: the lower snapshots exist by then).
fn unpack_as_ready(
    ctx: &Ctx,
    snapshotter: &str,
    sn: &dyn crate::snapshots::Snapshotter,
    image: &ResolvedImage,
    done: std::sync::mpsc::Receiver<usize>,
) -> Result<crate::unpack::Unpacked, crate::unpack::UnpackError> {
    let count = image.layers.len();
    let mut ready = BTreeSet::new();
    let mut next = 0;
    let mut total = crate::unpack::Unpacked::default();
    if count == 0 {
        let u = crate::unpack::unpack(
            &ctx.storage.db,
            &ctx.storage.content,
            &ctx.ns,
            snapshotter,
            sn,
            image,
            Some(&ctx.lease),
        )?;
        return Ok(u);
    }
    while next < count {
        let Ok(i) = done.recv() else {
            // A download failed: the pull reports that error.
            return Ok(total);
        };
        ready.insert(i);
        while ready.remove(&next) {
            let mut prefix = image.clone();
            prefix.layers.truncate(next + 1);
            let u = crate::unpack::unpack(
                &ctx.storage.db,
                &ctx.storage.content,
                &ctx.ns,
                snapshotter,
                sn,
                &prefix,
                Some(&ctx.lease),
            )?;
            let layer = &image.layers[next];
            // Only the top layer of the prefix can be new.
            if u.applied > 0 {
                total.applied += 1;
            } else {
                total.reused += 1;
            }
            total.entries += u.entries;
            total.bytes += u.bytes;
            total.chain_id = u.chain_id;
            ctx.send(Progress {
                kind: "layer",
                digest: layer.digest,
                size: layer.size,
                offset: layer.size,
                endpoint: String::new(),
                state: BlobState::Unpacked,
            });
            next += 1;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references_like_docker() {
        let r: ImageRef = "busybox".parse().unwrap();
        assert_eq!(r.name, "docker.io/library/busybox:latest");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r: ImageRef = "127.0.0.1:5000/team/app:v1.2".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r: ImageRef = format!("localhost/app@{d}").parse().unwrap();
        assert_eq!(r.repository, "app");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.unwrap().to_string(), d);
        for bad in ["", "Upper/Case", "a b", "host/app@sha256:zz", "host/app:"] {
            let err = bad.parse::<ImageRef>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
