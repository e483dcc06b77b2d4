//! What the CRI reports of an image, read from berthd's content store: the image ID (the
//! config's digest, as containerd's CRI), the packed size, and the config's user.
//!
//! Content is addressed by digest and never changes, so what is read once for a target
//! digest is kept in memory for good ([`MetaCache`]); this is a cache of berthd's content,
//! not state of berth-cri's own.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

use crate::berthd::Berthd;
use crate::error::{Error, Result};

/// Largest manifest, index or config read (containerd's limit for manifests is 4 MiB).
const MAX_BLOB: usize = 4 << 20;

/// An image as the CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// Index (if any), manifest, config and layers, packed.
    pub size: u64,
    /// The config's `User` (`uid`, `name`, `uid:gid`, `name:group`, or empty).
    pub user: String,
    /// The image config's `config` object (Entrypoint, Cmd, Env, WorkingDir, User,
    /// StopSignal…), what a container of the image starts from.
    pub config: serde_json::Value,
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct IndexOrManifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<Vec<Desc>>,
    #[serde(default)]
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
}

/// Image facts per target digest.
#[derive(Default)]
pub struct MetaCache {
    by_target: Mutex<HashMap<String, ImageMeta>>,
}

fn is_index(media_type: &str, parsed: &IndexOrManifest) -> bool {
    media_type.contains("index")
        || media_type.contains("manifest.list")
        || parsed.manifests.is_some()
}

impl MetaCache {
    /// The facts of the image whose record targets `digest` (of `media_type`, `size`).
    pub async fn get(
        &self,
        berthd: &Berthd,
        media_type: &str,
        digest: &str,
        size: i64,
    ) -> Result<ImageMeta> {
        if let Some(m) = self.by_target.lock().expect("meta lock").get(digest) {
            return Ok(m.clone());
        }
        let m = read(berthd, media_type, digest, size.max(0) as u64).await?;
        self.by_target
            .lock()
            .expect("meta lock")
            .insert(digest.to_owned(), m.clone());
        Ok(m)
    }
}

fn corrupt(digest: &str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("image blob {digest}: {e}"))
}

async fn read(berthd: &Berthd, media_type: &str, digest: &str, size: u64) -> Result<ImageMeta> {
    let mut total = size;
    let mut digest = digest.to_owned();
    let mut media_type = media_type.to_owned();
    // An index names one manifest per platform: linux/amd64 is berth's (berthd pulls it).
    let manifest = loop {
        let blob = berthd.read_blob(&digest, MAX_BLOB).await?;
        let parsed: IndexOrManifest =
            serde_json::from_slice(&blob).map_err(|e| corrupt(&digest, e))?;
        let mt = if parsed.media_type.is_empty() {
            media_type.clone()
        } else {
            parsed.media_type.clone()
        };
        if !is_index(&mt, &parsed) {
            break parsed;
        }
        let list = parsed.manifests.unwrap_or_default();
        let pick = list
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
            })
            .or_else(|| list.first())
            .ok_or_else(|| corrupt(&digest, "index lists no manifest"))?;
        total += pick.size;
        digest = pick.digest.clone();
        media_type = pick.media_type.clone();
    };
    let config = manifest
        .config
        .ok_or_else(|| corrupt(&digest, "manifest has no config"))?;
    total += config.size + manifest.layers.iter().map(|l| l.size).sum::<u64>();
    let blob = berthd.read_blob(&config.digest, MAX_BLOB).await?;
    let ic: serde_json::Value =
        serde_json::from_slice(&blob).map_err(|e| corrupt(&config.digest, e))?;
    let inner = ic.get("config").cloned().unwrap_or_default();
    Ok(ImageMeta {
        id: config.digest,
        size: total,
        user: inner["User"].as_str().unwrap_or_default().to_owned(),
        config: inner,
    })
}

/// The CRI's `uid`/`username` of an image user: a numeric user part is a uid, anything else
/// a name; the group part is not reported.
pub fn split_user(user: &str) -> (Option<i64>, String) {
    let u = user.split(':').next().unwrap_or_default();
    if u.is_empty() {
        return (None, String::new());
    }
    match u.parse::<i64>() {
        Ok(n) => (Some(n), String::new()),
        Err(_) => (None, u.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_split_like_containerd() {
        assert_eq!(split_user(""), (None, String::new()));
        assert_eq!(split_user("1002"), (Some(1002), String::new()));
        assert_eq!(split_user("1002:100"), (Some(1002), String::new()));
        assert_eq!(split_user("www-data"), (None, "www-data".into()));
        assert_eq!(split_user("www-data:100"), (None, "www-data".into()));
    }
}
