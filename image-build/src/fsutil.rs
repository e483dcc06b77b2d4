//! Small file-system and process helpers shared by the build steps: atomic writes, hashing,
//! and running outside tools with their output captured into the error.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// A failed file-system operation or outside command.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An I/O operation on a path failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done ("read", "create", "rename", …).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An outside command could not be started (usually: not installed).
    #[error("cannot run `{program}` (is it installed?)")]
    Spawn {
        /// The program name.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An outside command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for the reader.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its standard error.
        stderr: String,
    },
}

/// Shorthand to build an [`FsError::Io`] mapper: `.map_err(io_err("read", path))`.
pub fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs a command to completion and returns its output, or an error carrying the command
/// line and the end of its standard error.
pub fn run(cmd: &mut Command) -> Result<Output, FsError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd
        .output()
        .map_err(|source| FsError::Spawn { program, source })?;
    if output.status.success() {
        return Ok(output);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    Err(FsError::CommandFailed {
        command: describe(cmd),
        status: output.status.to_string(),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    })
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Size and lowercase hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<(u64, String), FsError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file being written next to its final path, renamed into place by [`AtomicFile::commit`]
/// so readers never see a half-written artefact. Dropped without commit, it is removed.
pub struct AtomicFile {
    file: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates a temporary file in `dest`'s directory.
    pub fn create(dest: &Path) -> Result<Self, FsError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let file = tempfile::Builder::new()
            .prefix(".berth-image-")
            .tempfile_in(dir)
            .map_err(io_err("create a temporary file in", dir))?;
        Ok(Self {
            file,
            dest: dest.to_path_buf(),
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// The temporary file's path (complete once written; renamed by commit).
    pub fn temp_path(&self) -> &Path {
        self.file.path()
    }

    /// The open temporary file, to write into.
    pub fn file(&mut self) -> &mut File {
        self.file.as_file_mut()
    }

    /// Flushes to disk, sets the mode to 0644 and renames into place.
    pub fn commit(self) -> Result<(), FsError> {
        use std::os::unix::fs::PermissionsExt;
        let dest = self.dest;
        let file = self.file.as_file();
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_err("chmod", &dest))?;
        file.sync_all().map_err(io_err("sync", &dest))?;
        self.file.persist(&dest).map_err(|e| FsError::Io {
            op: "rename into place",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

/// Writes `data` to `dest` atomically (temporary file + rename).
pub fn write_atomic(dest: &Path, data: &[u8]) -> Result<(), FsError> {
    let mut tmp = AtomicFile::create(dest)?;
    tmp.file().write_all(data).map_err(io_err("write", dest))?;
    tmp.commit()
}

/// Copies `src` to `dest` atomically.
pub fn copy_atomic(src: &Path, dest: &Path) -> Result<(), FsError> {
    let mut tmp = AtomicFile::create(dest)?;
    let mut input = File::open(src).map_err(io_err("open", src))?;
    io::copy(&mut input, tmp.file()).map_err(io_err("copy into", dest))?;
    tmp.commit()
}

/// A writer that counts the bytes passing through it.
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> CountingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, count: 0 }
    }
    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Returns the inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
