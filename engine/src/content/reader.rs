//! Positional reads from a committed blob.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{Digest, Error, Invalid, Result};

/// An open blob. Reads are positional (`pread`), so one reader can serve concurrent ranged
/// requests, as registry range requests and layer unpacking will need.
#[derive(Debug)]
pub struct ReaderAt {
    file: File,
    path: PathBuf,
    digest: Digest,
    size: u64,
}

impl ReaderAt {
    pub(crate) fn new(file: File, path: PathBuf, digest: Digest, size: u64) -> Self {
        Self {
            file,
            path,
            digest,
            size,
        }
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Reads into `buf` from `offset`; returns the bytes read, 0 at or past the end.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if offset >= self.size {
            return Ok(0);
        }
        let room = usize::try_from(self.size - offset).unwrap_or(usize::MAX);
        let len = buf.len().min(room);
        self.file
            .read_at(&mut buf[..len], offset)
            .map_err(Error::io("read", &self.path))
    }

    /// Reads `length` bytes from `offset`, clipped to the end of the blob. The result is
    /// bounded by the blob size whatever `length` says, so a client cannot make the engine
    /// allocate more than the blob. An `offset` past the end is refused.
    pub fn read_range(&self, offset: u64, length: u64) -> Result<Vec<u8>> {
        if offset > self.size {
            return Err(Invalid::Range {
                digest: self.digest,
                offset,
                size: self.size,
            }
            .into());
        }
        let len = length.min(self.size - offset);
        let mut out = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.file
            .read_exact_at(&mut out, offset)
            .map_err(Error::io("read", &self.path))?;
        Ok(out)
    }
}
