//! The CRI ImageService over berthd's images in the CRI namespace (`k8s.io`), the way
//! containerd's CRI plugin maps it:
//!
//! - an image's ID is its config's digest; every berthd image record resolving to that ID is
//!   one of its references: `repo:tag` records are its `repo_tags`, `repo@digest` records
//!   its `repo_digests`;
//! - `PullImage` pulls through berthd's Pull service (certs.d mirrors, air gap) into the
//!   `repo:tag` record, adds the `repo@digest` record beside it, and answers the ID;
//! - `RemoveImage` deletes every record of the image (and collects its content).
//!
//! Nothing is stored outside berthd: `berthctl -n k8s.io images ls` shows the same records.

pub mod meta;
pub mod reference;

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::proto::images as ipb;

use crate::berthd::Berthd;
use crate::error::{Error, Result};
use crate::labels;
use crate::proto;
pub use meta::ImageMeta;
use meta::{split_user, MetaCache};
use reference::{is_image_id, Reference};

/// The snapshotter plugin type whose `root` export is the image filesystem.
const SNAPSHOTTER_TYPE: &str = "io.containerd.snapshotter.v1";

/// One image: its facts and the berthd records naming it.
#[derive(Debug, Clone)]
struct Group {
    meta: ImageMeta,
    names: Vec<String>,
}

/// The image side of berth-cri.
pub struct Images {
    berthd: Arc<Berthd>,
    meta: MetaCache,
    snapshotter: String,
}

impl Images {
    /// Images of berthd, unpacked into `snapshotter` ("" = berthd's default) when pulled.
    pub fn new(berthd: Arc<Berthd>, snapshotter: &str) -> Self {
        Self {
            berthd,
            meta: MetaCache::default(),
            snapshotter: snapshotter.to_owned(),
        }
    }

    /// Every image, by ID. Records whose content cannot be read (a pull that stored the
    /// record but not yet its blobs, damaged content) are left out with a log line.
    async fn groups(&self) -> Result<BTreeMap<String, Group>> {
        let mut out: BTreeMap<String, Group> = BTreeMap::new();
        for rec in self.berthd.images().await? {
            let t = rec.target.as_ref().cloned().unwrap_or_default();
            match self
                .meta
                .get(&self.berthd, &t.media_type, &t.digest, t.size)
                .await
            {
                Ok(m) => out
                    .entry(m.id.clone())
                    .or_insert_with(|| Group {
                        meta: m,
                        names: Vec::new(),
                    })
                    .names
                    .push(rec.name),
                Err(e) => {
                    tracing::warn!(image = %rec.name, "image left out of the CRI view: {}", berth_api::errdefs::chain(&e))
                }
            }
        }
        Ok(out)
    }

    /// The image `reference` names (an ID, `repo:tag`, `repo@digest`, a short name).
    async fn find(&self, reference: &str) -> Result<Option<Group>> {
        let mut groups = self.groups().await?;
        if is_image_id(reference) {
            return Ok(groups.remove(reference));
        }
        let Some(r) = Reference::parse(reference) else {
            return Err(Error::InvalidArgument(format!(
                "{reference:?} is neither an image reference nor an image ID (sha256:<64 hex>)"
            )));
        };
        let name = r.name();
        Ok(groups.into_values().find(|g| g.names.contains(&name)))
    }

    /// The image `reference` names, for a container: its facts and the berthd record a
    /// container of it names (a `repo:tag` record when there is one, for the CRI's `image`
    /// field; else a `repo@digest` one). `NotFound` when there is none: kubelet pulls first.
    pub async fn resolve(&self, reference: &str) -> Result<(ImageMeta, String)> {
        let g = self.find(reference).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "image {reference:?} not found: pull it first (PullImage)"
            ))
        })?;
        let mut names = g.names.clone();
        names.sort_by_key(|n| (n.contains('@'), n.clone()));
        let name = names
            .into_iter()
            .next()
            .ok_or_else(|| Error::NotFound(format!("image {reference:?} has no record")))?;
        Ok((g.meta, name))
    }

    /// The facts of the image a berthd record names (`None`: no such record any more).
    pub async fn meta_of_record(&self, name: &str) -> Result<Option<ImageMeta>> {
        let rec = match self.berthd.image(name).await {
            Ok(r) => r,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let t = rec.target.as_ref().cloned().unwrap_or_default();
        Ok(Some(
            self.meta
                .get(&self.berthd, &t.media_type, &t.digest, t.size)
                .await?,
        ))
    }

    /// `ListImages`; a filter naming an image lists just that one.
    pub async fn list(&self, filter: Option<&str>) -> Result<Vec<proto::Image>> {
        if let Some(f) = filter.filter(|f| !f.is_empty()) {
            return Ok(self.find(f).await?.map(to_cri).into_iter().collect());
        }
        Ok(self.groups().await?.into_values().map(to_cri).collect())
    }

    /// `ImageStatus`: `None` when there is no such image (not an error in the CRI).
    pub async fn status(&self, reference: &str) -> Result<Option<proto::Image>> {
        Ok(self.find(reference).await?.map(to_cri))
    }

    /// `PullImage`: returns the image ID. The request's `AuthConfig` goes to berthd's Pull
    /// for this pull only (never logged here or there).
    pub async fn pull(&self, image: &str, auth: Option<&proto::AuthConfig>) -> Result<String> {
        let r = Reference::parse(image).ok_or_else(|| {
            Error::InvalidArgument(format!("{image:?} is not an image reference"))
        })?;
        let auth = auth
            .filter(|a| **a != proto::AuthConfig::default())
            .map(|a| berth_api::proto::pull::PullAuth {
                username: a.username.clone(),
                password: a.password.clone(),
                auth: a.auth.clone(),
                identity_token: a.identity_token.clone(),
                registry_token: a.registry_token.clone(),
                server_address: a.server_address.clone(),
                ..Default::default()
            });
        let result = self.berthd.pull(&r.name(), &self.snapshotter, auth).await?;
        let m = self
            .meta
            .get(
                &self.berthd,
                &result.media_type,
                &result.digest,
                result.size,
            )
            .await?;
        if r.digest.is_none() {
            let digest_ref = format!("{}@{}", r.repo(), result.digest);
            let rec = ipb::Image {
                name: digest_ref.clone(),
                labels: [(labels::IMAGE_MANAGED.to_owned(), "managed".to_owned())]
                    .into_iter()
                    .collect(),
                target: Some(ipb::Descriptor {
                    media_type: result.media_type.clone(),
                    digest: result.digest.clone(),
                    size: result.size,
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            };
            match self.berthd.create_image(rec).await {
                Ok(_) => {}
                // Same name, same digest: the same target.
                Err(e) if e.berthd_kind() == Some(berth_api::errdefs::Kind::AlreadyExists) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(image, id = %m.id, record = %result.name, "pulled");
        Ok(m.id)
    }

    /// `RemoveImage`: every record of the image; an unknown image is no error.
    pub async fn remove(&self, reference: &str) -> Result<()> {
        let Some(g) = self.find(reference).await? else {
            return Ok(());
        };
        let last = g.names.len().saturating_sub(1);
        for (i, name) in g.names.iter().enumerate() {
            match self.berthd.delete_image(name, i == last).await {
                Ok(()) => {}
                // A concurrent RemoveImage got there first.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        tracing::info!(reference, id = %g.meta.id, "removed");
        Ok(())
    }

    /// The snapshotter containers' layers live in, and its directory (its plugin's `root`).
    async fn snapshotter_and_root(&self) -> Result<(String, String)> {
        let plugins = self
            .berthd
            .plugins(vec![format!("type=={SNAPSHOTTER_TYPE}")])
            .await?;
        let wanted = if self.snapshotter.is_empty() {
            let svc = self
                .berthd
                .plugins(vec!["id==snapshots".to_owned()])
                .await?;
            svc.iter()
                .find_map(|p| p.exports.get("default").cloned())
                .unwrap_or_else(|| "overlayfs".to_owned())
        } else {
            self.snapshotter.clone()
        };
        let mountpoint = plugins
            .iter()
            .find(|p| p.id == wanted)
            .and_then(|p| p.exports.get("root").cloned())
            .unwrap_or_default();
        Ok((wanted, mountpoint))
    }

    /// The directory of the snapshotter holding containers' writable layers.
    pub async fn snapshotter_root(&self) -> Result<String> {
        Ok(self.snapshotter_and_root().await?.1)
    }

    /// `ImageFsInfo`: the default snapshotter's directory and what its snapshots in the CRI
    /// namespace use.
    pub async fn fs_info(&self) -> Result<proto::ImageFsInfoResponse> {
        let (wanted, mountpoint) = self.snapshotter_and_root().await?;
        let (mut bytes, mut inodes) = (0u64, 0u64);
        for s in self.berthd.snapshots(&wanted).await? {
            match self.berthd.snapshot_usage(&wanted, &s.name).await {
                Ok((b, i)) => {
                    bytes += b.max(0) as u64;
                    inodes += i.max(0) as u64;
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let usage = proto::FilesystemUsage {
            timestamp: crate::now_nanos(),
            fs_id: Some(proto::FilesystemIdentifier { mountpoint }),
            used_bytes: Some(proto::UInt64Value { value: bytes }),
            inodes_used: Some(proto::UInt64Value { value: inodes }),
        };
        Ok(proto::ImageFsInfoResponse {
            image_filesystems: vec![usage.clone()],
            container_filesystems: vec![usage],
        })
    }
}

/// The CRI view of one image.
fn to_cri(g: Group) -> proto::Image {
    let mut repo_tags = Vec::new();
    let mut repo_digests = Vec::new();
    for n in g.names {
        if n.contains('@') {
            repo_digests.push(n);
        } else if !is_image_id(&n) {
            repo_tags.push(n);
        }
    }
    repo_tags.sort();
    repo_digests.sort();
    let (uid, username) = split_user(&g.meta.user);
    proto::Image {
        id: g.meta.id.clone(),
        repo_tags,
        repo_digests,
        size: g.meta.size,
        uid: uid.map(|value| proto::Int64Value { value }),
        username,
        spec: Some(proto::ImageSpec {
            image: g.meta.id,
            ..Default::default()
        }),
        pinned: false,
    }
}
