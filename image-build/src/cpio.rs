//! A writer (and a small reader, for checks) of the "newc" cpio format the kernel unpacks into
//! its initial rootfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Hand-written rather than taken from a crate: the format is a 110-byte ASCII header, the
//! name and the data, each padded to 4 bytes — a few dozen lines — and writing it ourselves
//! lets us fix everything that makes archives differ between builds: entry order, owners
//! (always 0:0), mtimes (`SOURCE_DATE_EPOCH`), inode numbers (sequential from 1), and add device
//! nodes such as `/dev/console` without needing root to `mknod` them first.

use std::io::{self, Read, Write};

const MAGIC: &[u8; 6] = b"070701";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";

/// Octal file-type bits of `st_mode`.
pub mod mode {
    /// Directory.
    pub const DIR: u32 = 0o040000;
    /// Regular file.
    pub const FILE: u32 = 0o100000;
    /// Symbolic link.
    pub const SYMLINK: u32 = 0o120000;
    /// Character device.
    pub const CHAR: u32 = 0o020000;
    /// Mask of the type bits.
    pub const TYPE_MASK: u32 = 0o170000;
}

/// A cpio archive could not be written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Writing to the underlying stream failed.
    #[error("writing cpio entry {name}")]
    Write {
        /// The entry being written.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A value does not fit a 32-bit header field.
    #[error("cpio entry {name}: {what} {value} does not fit in 32 bits")]
    TooLarge {
        /// The entry.
        name: String,
        /// Which field.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The file's size changed while it was being archived.
    #[error("cpio entry {name}: expected {expected} bytes, read {actual}")]
    SizeMismatch {
        /// The entry.
        name: String,
        /// Size announced in the header.
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },
    /// The archive being read is malformed.
    #[error("malformed cpio archive at offset {offset}: {reason}")]
    Malformed {
        /// Byte offset of the problem.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Header fields of one entry (the reader's output and the writer's input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Path inside the archive, without a leading `/`.
    pub name: String,
    /// Inode number.
    pub ino: u32,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Data size.
    pub size: u32,
    /// Device major (of a device node).
    pub rdev_major: u32,
    /// Device minor (of a device node).
    pub rdev_minor: u32,
}

/// Streams a newc archive. Every entry is owned by 0:0 and gets the same mtime; inode
/// numbers are assigned in order. Call [`CpioWriter::finish`] to append the trailer.
pub struct CpioWriter<W: Write> {
    out: W,
    offset: u64,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive whose entries all carry `mtime`.
    pub fn new(out: W, mtime: u32) -> Self {
        Self {
            out,
            offset: 0,
            next_ino: 1,
            mtime,
        }
    }

    /// Bytes written so far (uncompressed size once finished).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(name, mode::DIR | perm, 2, 0, (0, 0))?;
        Ok(())
    }

    /// Adds a regular file from memory.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.file_from(name, perm, data.len() as u64, &mut &data[..])
    }

    /// Adds a regular file of `size` bytes read from `reader`.
    pub fn file_from(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), CpioError> {
        self.entry(name, mode::FILE | perm, 1, size, (0, 0))?;
        let copied =
            io::copy(&mut reader.take(size), &mut self.out).map_err(|source| CpioError::Write {
                name: name.to_string(),
                source,
            })?;
        if copied != size {
            return Err(CpioError::SizeMismatch {
                name: name.to_string(),
                expected: size,
                actual: copied,
            });
        }
        self.offset += size;
        self.pad(name)
    }

    /// Adds a symbolic link (its target is the entry's data, as in newc).
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), CpioError> {
        self.entry(name, mode::SYMLINK | 0o777, 1, target.len() as u64, (0, 0))?;
        self.raw(name, target.as_bytes())?;
        self.pad(name)
    }

    /// Adds a character device node.
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(name, mode::CHAR | perm, 1, 0, (major, minor))
    }

    /// Writes the `TRAILER!!!` entry and returns the underlying writer.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.header(&Header {
            name: TRAILER.to_string(),
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev_major: 0,
            rdev_minor: 0,
        })?;
        self.out.flush().map_err(|source| CpioError::Write {
            name: TRAILER.to_string(),
            source,
        })?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u64,
        rdev: (u32, u32),
    ) -> Result<(), CpioError> {
        let size = u32::try_from(size).map_err(|_| CpioError::TooLarge {
            name: name.to_string(),
            what: "size",
            value: size,
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(&Header {
            name: name.trim_start_matches('/').to_string(),
            ino,
            mode,
            uid: 0,
            gid: 0,
            nlink,
            mtime: self.mtime,
            size,
            rdev_major: rdev.0,
            rdev_minor: rdev.1,
        })
    }

    fn header(&mut self, h: &Header) -> Result<(), CpioError> {
        let namesize = h.name.len() + 1;
        let fields = [
            h.ino,
            h.mode,
            h.uid,
            h.gid,
            h.nlink,
            h.mtime,
            h.size,
            0, // devmajor: the archive's own device, irrelevant and kept 0
            0, // devminor
            h.rdev_major,
            h.rdev_minor,
            namesize as u32,
            0, // check: only used by the "070702" crc format
        ];
        let mut buf = Vec::with_capacity(HEADER_LEN + namesize + 3);
        buf.extend_from_slice(MAGIC);
        for field in fields {
            buf.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        buf.extend_from_slice(h.name.as_bytes());
        buf.push(0);
        self.raw(&h.name, &buf)?;
        self.pad(&h.name)
    }

    fn raw(&mut self, name: &str, data: &[u8]) -> Result<(), CpioError> {
        self.out
            .write_all(data)
            .map_err(|source| CpioError::Write {
                name: name.to_string(),
                source,
            })?;
        self.offset += data.len() as u64;
        Ok(())
    }

    fn pad(&mut self, name: &str) -> Result<(), CpioError> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.raw(name, &[0u8; 3][..pad])
    }
}

/// Parses a whole (uncompressed) newc archive into headers and data, stopping at the
/// trailer. Used by tests and by `berth-image` to check what it wrote.
pub fn read_archive(data: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, CpioError> {
    let mut entries = Vec::new();
    let mut off = 0usize;
    let malformed = |offset, reason| CpioError::Malformed { offset, reason };
    loop {
        let header = data
            .get(off..off + HEADER_LEN)
            .ok_or(malformed(off, "truncated header"))?;
        if &header[..6] != MAGIC {
            return Err(malformed(off, "bad magic"));
        }
        let mut fields = [0u32; 13];
        for (i, field) in fields.iter_mut().enumerate() {
            let hex = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .map_err(|_| malformed(off, "non-ASCII header"))?;
            *field = u32::from_str_radix(hex, 16).map_err(|_| malformed(off, "bad hex field"))?;
        }
        let namesize = fields[11] as usize;
        let name_start = off + HEADER_LEN;
        let name_bytes = data
            .get(name_start..name_start + namesize)
            .ok_or(malformed(off, "truncated name"))?;
        if namesize == 0 || name_bytes[namesize - 1] != 0 {
            return Err(malformed(off, "name not NUL-terminated"));
        }
        let name = String::from_utf8(name_bytes[..namesize - 1].to_vec())
            .map_err(|_| malformed(off, "non-UTF-8 name"))?;
        let data_start = (name_start + namesize).next_multiple_of(4);
        let size = fields[6] as usize;
        let body = data
            .get(data_start..data_start + size)
            .ok_or(malformed(data_start, "truncated data"))?;
        off = (data_start + size).next_multiple_of(4);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push((
            Header {
                name,
                ino: fields[0],
                mode: fields[1],
                uid: fields[2],
                gid: fields[3],
                nlink: fields[4],
                mtime: fields[5],
                size: fields[6],
                rdev_major: fields[9],
                rdev_minor: fields[10],
            },
            body.to_vec(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), 1_700_000_000);
        w.file("init", 0o755, b"#!hello").unwrap();
        w.dir("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.symlink("lib", "usr/lib").unwrap();
        w.file("berth/root.erofs", 0o644, &[7u8; 5]).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_through_the_reader() {
        let data = sample();
        assert_eq!(data.len() % 4, 0);
        let entries = read_archive(&data).unwrap();
        let names: Vec<_> = entries.iter().map(|(h, _)| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["init", "dev", "dev/console", "lib", "berth/root.erofs"]
        );
        let (console, _) = &entries[2];
        assert_eq!(console.mode, mode::CHAR | 0o600);
        assert_eq!((console.rdev_major, console.rdev_minor), (5, 1));
        assert_eq!(entries[0].1, b"#!hello");
        assert_eq!(entries[3].1, b"usr/lib");
        assert_eq!(entries[4].1, [7u8; 5]);
        for (i, (h, _)) in entries.iter().enumerate() {
            assert_eq!((h.uid, h.gid, h.mtime), (0, 0, 1_700_000_000));
            assert_eq!(h.ino, i as u32 + 1);
        }
    }

    #[test]
    fn gnu_cpio_lists_it() {
        let mut child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("GNU cpio is needed for this test (apt-get install cpio)");
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 5, "{listing}");
        assert!(
            lines[0].starts_with("-rwxr-xr-x") && lines[0].ends_with(" init"),
            "{listing}"
        );
        assert!(
            lines[2].starts_with("crw-------") && lines[2].contains("5,"),
            "{listing}"
        );
        assert!(lines[3].ends_with("lib -> usr/lib"), "{listing}");
        assert!(lines[0].contains(" root "), "{listing}");
    }

    #[test]
    fn same_input_same_bytes() {
        assert_eq!(sample(), sample());
        let mut w = CpioWriter::new(Vec::new(), 1);
        w.file("init", 0o755, b"#!hello").unwrap();
        let other = w.finish().unwrap();
        assert_ne!(&sample()[..other.len()], &other[..]);
    }

    #[test]
    fn reader_rejects_garbage() {
        assert!(read_archive(b"070701zz").is_err());
        let mut data = sample();
        data.truncate(200);
        assert!(read_archive(&data).is_err());
    }
}
