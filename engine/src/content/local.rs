//! [`LocalStore`]: the content store on a local filesystem.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::writer::{self, Writer};
use super::{
    Digest, Error, Info, IngestManager, Ingester, Invalid, Manager, Provider, ReaderAt, Result,
    Status,
};

/// Prefix of temporary files in `blobs/sha256/`. berth's own commit publishes blobs with a
/// no-replace rename straight from the ingest and never leaves one, but anything staging
/// blobs next to their final name (containerd's convention, build-time preloading) must use
/// this prefix so an interrupted copy is recognisable and removed on open.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

/// The content store rooted at `<root>/content`.
///
/// Cheap to share by reference across threads: all state is on disk, and exclusion between
/// writers of one ref is a `flock(2)` on the ingest's lock file (see [`Writer`]).
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    cleaned: Vec<PathBuf>,
}

impl LocalStore {
    /// Opens (creating if needed) the store under `<root>/content`.
    ///
    /// Leftover temporary files from interrupted commits are removed and reported by
    /// [`LocalStore::cleaned`]; ingests are kept, because they are resumable.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().join("content");
        let store = Self {
            root,
            cleaned: Vec::new(),
        };
        for dir in [store.blobs_dir(), store.ingests_dir()] {
            fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        }
        let cleaned = store.remove_temp_files()?;
        Ok(Self { cleaned, ..store })
    }

    /// `<root>/content`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What [`LocalStore::open`] removed.
    pub fn cleaned(&self) -> &[PathBuf] {
        &self.cleaned
    }

    /// Where the blob for `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.encoded())
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join(Digest::ALGORITHM)
    }

    fn ingests_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Ingest directories are named by the hash of the ref, as in containerd, because refs are
    /// client strings that may contain `/` or be longer than a file name.
    pub(crate) fn ingest_dir(&self, reference: &str) -> PathBuf {
        self.ingests_dir()
            .join(Digest::of(reference.as_bytes()).encoded())
    }

    fn remove_temp_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.blobs_dir();
        let mut removed = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let entry = entry.map_err(Error::io("read directory", &dir))?;
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let res = if is_dir {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match res {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "content: removed leftover temporary file");
                    removed.push(path);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", path)(e)),
            }
        }
        removed.sort();
        Ok(removed)
    }
}

impl Provider for LocalStore {
    fn reader_at(&self, digest: &Digest) -> Result<ReaderAt> {
        let path = self.blob_path(digest);
        let file =
            File::open(&path).map_err(|e| not_found_or(e, "open", &path, || blob(digest)))?;
        let size = file.metadata().map_err(Error::io("stat", &path))?.len();
        Ok(ReaderAt::new(file, path, *digest, size))
    }
}

impl Ingester for LocalStore {
    fn writer(&self, reference: &str, expected: Option<(Digest, u64)>) -> Result<Writer> {
        if reference.is_empty() {
            return Err(Invalid::EmptyRef.into());
        }
        Writer::open(
            self.ingest_dir(reference),
            self.blobs_dir(),
            reference,
            expected,
        )
    }
}

impl Manager for LocalStore {
    fn info(&self, digest: &Digest) -> Result<Info> {
        let path = self.blob_path(digest);
        let meta =
            fs::metadata(&path).map_err(|e| not_found_or(e, "stat", &path, || blob(digest)))?;
        let updated_at = meta.modified().map_err(Error::io("stat", &path))?;
        Ok(Info {
            digest: *digest,
            size: meta.len(),
            created_at: meta.created().unwrap_or(updated_at),
            updated_at,
        })
    }

    fn list(&self) -> Result<Vec<Info>> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let entry = entry.map_err(Error::io("read directory", &dir))?;
            // Anything that is not a blob name (temporary files) is not content.
            let Ok(digest) = Digest::from_encoded(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            match self.info(&digest) {
                Ok(info) => out.push(info),
                // Deleted between readdir and stat.
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|info| info.digest);
        Ok(out)
    }

    fn delete(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        fs::remove_file(&path).map_err(|e| not_found_or(e, "remove", &path, || blob(digest)))
    }
}

impl IngestManager for LocalStore {
    fn status(&self, reference: &str) -> Result<Status> {
        let dir = self.ingest_dir(reference);
        match writer::read_status(&dir)? {
            Some(status) if status.reference == reference => Ok(status),
            _ => Err(ingest_not_found(reference)),
        }
    }

    fn list_statuses(&self) -> Result<Vec<Status>> {
        let dir = self.ingests_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read directory", &dir))? {
            let entry = entry.map_err(Error::io("read directory", &dir))?;
            // Ingests being created or removed right now have no readable `ref`: skip them.
            if let Some(status) = writer::read_status(&entry.path())? {
                out.push(status);
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    fn abort(&self, reference: &str) -> Result<()> {
        let dir = self.ingest_dir(reference);
        if !dir.exists() {
            return Err(ingest_not_found(reference));
        }
        // Holding the lock while removing keeps an open writer's ingest intact.
        let _lock = writer::lock_ingest(&dir, reference)?;
        fs::remove_dir_all(&dir).map_err(Error::io("remove", &dir))
    }
}

fn blob(digest: &Digest) -> String {
    format!("content {digest}")
}

pub(crate) fn ingest_not_found(reference: &str) -> Error {
    Error::NotFound {
        what: format!("ingest ref {reference:?}"),
    }
}

fn not_found_or(
    e: io::Error,
    op: &'static str,
    path: &Path,
    what: impl FnOnce() -> String,
) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound { what: what() }
    } else {
        Error::io(op, path)(e)
    }
}

/// Unix nanoseconds, the format of `startedat` and `updatedat`.
pub(crate) fn encode_time(t: SystemTime) -> String {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

pub(crate) fn decode_time(s: &str) -> Option<SystemTime> {
    let nanos: u64 = s.trim().parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}
