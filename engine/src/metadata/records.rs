//! The records the database stores, one struct per table. Values are JSON so a field added
//! later (with `#[serde(default)]`) does not need a schema migration; keys are redb tuples
//! (see `schema.rs` and docs/storage.md).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::content::Digest;

/// Free-form key/value metadata on any object; `containerd.io/gc.*` labels steer the
/// garbage collector (see [`super::gc`]).
pub type Labels = BTreeMap<String, String>;

/// A namespace: the unit of isolation between users of one engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// An OCI content descriptor: what an image name points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub media_type: String,
    #[serde(with = "digest_serde")]
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image: a name pointing at a manifest or index in the content store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub name: String,
    pub target: Descriptor,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A blob's record in one namespace. The blob itself is shared by all namespaces in the
/// content store; a namespace sees it only through this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    #[serde(with = "digest_serde")]
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A snapshot's record in one namespace. `key` is the name the client uses; `backend_key` is
/// the name inside the snapshotter (namespaces share one backend, so the backend names are
/// made unique by whoever creates them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub snapshotter: String,
    pub key: String,
    pub backend_key: String,
    /// Key (in the same namespace and snapshotter) of the parent snapshot.
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A container's metadata (not its running task).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Image name it was created from (may be empty).
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub snapshotter: String,
    /// Key of its root filesystem snapshot in `snapshotter` (may be empty).
    #[serde(default)]
    pub snapshot_key: String,
    /// Runtime name, e.g. `io.containerd.runc.v2`.
    #[serde(default)]
    pub runtime: String,
    /// The OCI runtime spec, as given (normally JSON).
    #[serde(default, with = "bytes_serde")]
    pub spec: Vec<u8>,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// A lease: holds resources against garbage collection while a client works (a pull, an
/// import) and until it expires or is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: SystemTime,
    /// After this the lease protects nothing and the collector deletes it.
    #[serde(default)]
    pub expires_at: Option<SystemTime>,
}

/// A resource attached to a lease.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LeaseResource {
    Content(#[serde(with = "digest_serde")] Digest),
    /// An ingest ref in the content store.
    Ingest(String),
    Snapshot {
        snapshotter: String,
        key: String,
    },
}

impl LeaseResource {
    /// containerd's (type, id) encoding: `content`, `ingests`, `snapshots/<snapshotter>`.
    pub fn encode(&self) -> (String, String) {
        match self {
            Self::Content(d) => ("content".into(), d.to_string()),
            Self::Ingest(r) => ("ingests".into(), r.clone()),
            Self::Snapshot { snapshotter, key } => {
                (format!("snapshots/{snapshotter}"), key.clone())
            }
        }
    }

    /// Parses the (type, id) encoding; `None` for an unknown type.
    pub fn decode(kind: &str, id: &str) -> Result<Self, String> {
        match kind {
            "content" => id
                .parse()
                .map(Self::Content)
                .map_err(|e: crate::content::DigestError| e.to_string()),
            "ingests" => Ok(Self::Ingest(id.to_owned())),
            _ => match kind.strip_prefix("snapshots/") {
                Some(s) if !s.is_empty() => Ok(Self::Snapshot {
                    snapshotter: s.to_owned(),
                    key: id.to_owned(),
                }),
                _ => Err(format!(
                    "unknown lease resource type {kind:?}: expected content, ingests or \
                     snapshots/<snapshotter>"
                )),
            },
        }
    }
}

/// Digests as their `sha256:<hex>` text in JSON.
pub(crate) mod digest_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::content::Digest;

    pub fn serialize<S: Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Bytes as base64 in JSON (an array of numbers would triple a spec's size).
pub(crate) mod bytes_serde {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}
