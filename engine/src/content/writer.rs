//! [`Writer`]: a resumable ingest, and the commit that turns it into a blob.
//!
//! # Locking
//! One writer per ref: [`Writer`] holds an exclusive, non-blocking `flock(2)` on
//! `ingest/<h>/lock` for its whole life. flock was chosen over an O_EXCL lock file because the
//! kernel drops the lock when the holder's file is closed, including when the process dies, so
//! a crash can never leave a stale lock that wedges the ref. flock locks belong to the open
//! file description, so two writers in one process exclude each other exactly like two
//! processes do, without an in-process map. After locking, the writer checks that the lock
//! path still names the file it locked: a commit or abort may have removed the directory in
//! between, and a lock on an unlinked file would exclude nobody.

use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};
use sha2::{Digest as _, Sha256};

use super::local::{decode_time, encode_time};
use super::{Digest, Error, Invalid, Result, Status};

const DATA: &str = "data";
const REF: &str = "ref";
const EXPECTED: &str = "expected";
const STARTED_AT: &str = "startedat";
const UPDATED_AT: &str = "updatedat";
const LOCK: &str = "lock";

/// An open ingest. Dropping it keeps the data on disk: the next [`super::Ingester::writer`]
/// for the same ref resumes at [`Writer::offset`].
pub struct Writer {
    reference: String,
    dir: PathBuf,
    blobs_dir: PathBuf,
    data: File,
    offset: u64,
    /// Hash of `data[..offset]`, kept up to date by every write so commit does not reread.
    hasher: Sha256,
    expected: Option<(Digest, u64)>,
    started_at: SystemTime,
    updated_at: SystemTime,
    _lock: Flock<File>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("reference", &self.reference)
            .field("dir", &self.dir)
            .field("offset", &self.offset)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl Writer {
    pub(crate) fn open(
        dir: PathBuf,
        blobs_dir: PathBuf,
        reference: &str,
        expected: Option<(Digest, u64)>,
    ) -> Result<Self> {
        let lock = lock_ingest(&dir, reference)?;
        let now = SystemTime::now();
        let data_path = dir.join(DATA);
        let resumed = read_status(&dir)?.filter(|s| s.reference == reference);
        let (data, started_at, stored_expected) = match &resumed {
            Some(status) => {
                let data = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&data_path)
                    .map_err(Error::io("open", &data_path))?;
                let stored = status.expected.map(|d| (d, status.total));
                (data, status.started_at, stored)
            }
            None => {
                // New ingest (or a half-created one from a crash: `ref` is written last, so
                // whatever is there is not resumable and is overwritten).
                let data = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&data_path)
                    .map_err(Error::io("create", &data_path))?;
                write_file(&dir.join(STARTED_AT), &encode_time(now))?;
                remove_if_present(&dir.join(EXPECTED))?;
                (data, now, None)
            }
        };
        let expected = match (expected, stored_expected) {
            (Some(requested), Some(stored)) if requested != stored => {
                return Err(Invalid::ExpectedChanged {
                    reference: reference.to_owned(),
                    requested,
                    stored,
                }
                .into());
            }
            (Some(requested), None) => {
                write_file(
                    &dir.join(EXPECTED),
                    &format!("{} {}", requested.0, requested.1),
                )?;
                Some(requested)
            }
            (_, stored) => stored.or(expected),
        };
        write_file(&dir.join(UPDATED_AT), &encode_time(now))?;
        if resumed.is_none() {
            write_file(&dir.join(REF), reference)?;
        }
        // On resume, rehash what is already there: the hash state is not persisted, and the
        // bytes on disk are the truth whatever a previous writer believed.
        let (hasher, offset) = hash_file(&data, &data_path)?;
        Ok(Self {
            reference: reference.to_owned(),
            dir,
            blobs_dir,
            data,
            offset,
            hasher,
            expected,
            started_at,
            updated_at: now,
            _lock: lock,
        })
    }

    /// Bytes written so far: where the next write must start.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The ingest's current state.
    pub fn status(&self) -> Status {
        Status {
            reference: self.reference.clone(),
            offset: self.offset,
            total: self.expected.map_or(0, |(_, size)| size),
            expected: self.expected.map(|(d, _)| d),
            started_at: self.started_at,
            updated_at: self.updated_at,
        }
    }

    /// The digest of what has been written so far.
    pub fn digest(&self) -> Digest {
        Digest::from_bytes(self.hasher.clone().finalize().into())
    }

    /// Writes `buf` at `offset`, which must be exactly [`Writer::offset`]: a gap would leave
    /// bytes nobody hashed and an overlap would rewrite hashed ones, so both are refused
    /// rather than guessed at. A write past the expected size is refused at once.
    pub fn write_at(&mut self, offset: u64, buf: &[u8]) -> Result<()> {
        crate::failpoint::hit("content.write.chunk");
        if offset != self.offset {
            return Err(Invalid::Offset {
                reference: self.reference.clone(),
                offset,
                current: self.offset,
            }
            .into());
        }
        let end = self.offset + buf.len() as u64;
        if let Some((_, size)) = self.expected {
            if end > size {
                return Err(Invalid::SizeMismatch {
                    reference: self.reference.clone(),
                    expected: size,
                    actual: end,
                }
                .into());
            }
        }
        let path = self.dir.join(DATA);
        if let Err(e) = self.data.write_all_at(buf, offset) {
            // Drop a partial write so the file keeps matching offset and hash.
            let _ = self.data.set_len(self.offset);
            return Err(Error::io("write", path)(e));
        }
        self.hasher.update(buf);
        self.offset = end;
        self.updated_at = SystemTime::now();
        write_file(&self.dir.join(UPDATED_AT), &encode_time(self.updated_at))
    }

    /// Appends `buf` at the current offset.
    pub fn write(&mut self, buf: &[u8]) -> Result<()> {
        self.write_at(self.offset, buf)
    }

    /// Verifies size and digest, then publishes the blob.
    ///
    /// Order, for crash safety: fsync the data, make it read-only (0444: blobs are immutable
    /// and nothing should open them for writing), rename it into `blobs/sha256/` with
    /// `RENAME_NOREPLACE` (atomic: readers see the whole blob or nothing; and an existing
    /// blob is never replaced under its readers), fsync the directory so the name survives a
    /// power cut, then remove the ingest. A crash before the rename leaves a resumable ingest;
    /// after it, a complete blob plus an ingest that commits to [`Error::AlreadyExists`].
    ///
    /// On a size or digest mismatch nothing is published and the ingest is kept, to be
    /// resumed or aborted. If the blob already exists the ingest is discarded and
    /// [`Error::AlreadyExists`] returned, as in containerd.
    pub fn commit(mut self, size: u64, digest: Digest) -> Result<Digest> {
        let reference = self.reference.clone();
        if self.offset != size {
            return Err(Invalid::SizeMismatch {
                reference,
                expected: size,
                actual: self.offset,
            }
            .into());
        }
        if let Some((expected_digest, expected_size)) = self.expected {
            if expected_size != size {
                return Err(Invalid::SizeMismatch {
                    reference,
                    expected: expected_size,
                    actual: size,
                }
                .into());
            }
            if expected_digest != digest {
                return Err(Invalid::DigestMismatch {
                    reference,
                    expected: expected_digest,
                    actual: digest,
                }
                .into());
            }
        }
        let actual = self.digest();
        if actual != digest {
            return Err(Invalid::DigestMismatch {
                reference,
                expected: digest,
                actual,
            }
            .into());
        }
        let data_path = self.dir.join(DATA);
        self.data
            .sync_all()
            .map_err(Error::io("fsync", &data_path))?;
        self.data
            .set_permissions(Permissions::from_mode(0o444))
            .map_err(Error::io("chmod", &data_path))?;
        let target = self.blobs_dir.join(digest.encoded());
        crate::failpoint::hit("content.commit.before_rename");
        match publish(&data_path, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.discard();
                return Err(Error::AlreadyExists { digest });
            }
            Err(e) => return Err(Error::io("rename into", &target)(e)),
        }
        crate::failpoint::hit("content.commit.after_rename");
        File::open(&self.blobs_dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync", &self.blobs_dir))?;
        self.discard();
        Ok(digest)
    }

    /// Removes the ingest directory while still holding its lock. The blob (if any) is safe
    /// by now, so a failure here only leaves an ingest behind: it is logged, not returned.
    fn discard(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(error = %e, path = %self.dir.display(), reference = %self.reference,
                    "content: could not remove a finished ingest");
            }
        }
    }
}

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Writer::write(self, buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Atomically gives `from` the name `to`, failing with `AlreadyExists` if `to` exists.
/// Filesystems without `RENAME_NOREPLACE` get the same guarantee from link(2) + unlink.
fn publish(from: &Path, to: &Path) -> io::Result<()> {
    match nix::fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes the ref's lock, creating the ingest directory if needed (see the module docs).
pub(crate) fn lock_ingest(dir: &Path, reference: &str) -> Result<Flock<File>> {
    let path = dir.join(LOCK);
    loop {
        fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        let file = match OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            // Removed by a commit or abort between the two calls: start again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("open", &path)(e)),
        };
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(Error::Locked {
                    reference: reference.to_owned(),
                })
            }
            Err((_, e)) => return Err(Error::io("lock", &path)(e.into())),
        };
        let held = lock.metadata().map_err(Error::io("stat", &path))?;
        match fs::metadata(&path) {
            Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => return Ok(lock),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat", &path)(e)),
        }
    }
}

/// Reads an ingest's state from its files; `None` when it has no `ref` (being created or
/// removed, or not an ingest).
pub(crate) fn read_status(dir: &Path) -> Result<Option<Status>> {
    let Some(reference) = read_optional(&dir.join(REF))? else {
        return Ok(None);
    };
    let corrupt = |file: &str, reason: String| -> Error {
        Invalid::CorruptIngest {
            path: dir.join(file),
            reason,
        }
        .into()
    };
    let (expected, total) = match read_optional(&dir.join(EXPECTED))? {
        None => (None, 0),
        Some(text) => {
            let (d, s) = text
                .trim()
                .split_once(' ')
                .ok_or_else(|| corrupt(EXPECTED, format!("{text:?} is not \"<digest> <size>\"")))?;
            let d = d
                .parse::<Digest>()
                .map_err(|e| corrupt(EXPECTED, e.to_string()))?;
            let s = s
                .parse::<u64>()
                .map_err(|e| corrupt(EXPECTED, e.to_string()))?;
            (Some(d), s)
        }
    };
    let time = |file: &str| -> Result<Option<SystemTime>> {
        read_optional(&dir.join(file))?
            .map(|t| decode_time(&t).ok_or_else(|| corrupt(file, format!("{t:?} is not a time"))))
            .transpose()
    };
    let started_at = time(STARTED_AT)?.unwrap_or(SystemTime::UNIX_EPOCH);
    let updated_at = time(UPDATED_AT)?.unwrap_or(started_at);
    let data_path = dir.join(DATA);
    let offset = match fs::metadata(&data_path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("stat", data_path)(e)),
    };
    Ok(Some(Status {
        reference,
        offset,
        total,
        expected,
        started_at,
        updated_at,
    }))
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    fs::write(path, contents).map_err(Error::io("write", path))
}

fn hash_file(file: &File, path: &Path) -> Result<(Sha256, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = file;
    let mut total = 0u64;
    // `file` was just opened, so its cursor is at 0; writes are positional and never move it.
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", path)(e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher, total))
}
