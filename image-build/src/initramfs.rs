//! The initramfs (see "Initramfs" in `docs/architecture.md`): stage-1 `/init`, `/dev/console`,
//! mount points, the modules needed to mount the root image, and the root image itself,
//! written as a sorted newc cpio and optionally compressed.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use flate2::write::GzEncoder;

use crate::cpio::{CpioError, CpioWriter};
use crate::definition::InitramfsCompression;
use crate::fsutil::FsError;
use berth_layout::paths::{self, in_tree};

use crate::modules::{ModuleIndex, ModuleSet, ModulesError};
use crate::tree::{Node, Source, Tree, TreeError};

/// zstd level: 19 is the highest non-"ultra" level; decompression speed barely depends on it.
const ZSTD_LEVEL: i32 = 19;

/// The initramfs could not be assembled or written.
#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    /// Adding an entry failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// Adding the modules failed.
    #[error(transparent)]
    Modules(#[from] ModulesError),
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
    /// Opening an input failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The compressor failed.
    #[error("{compression} compression of the initramfs failed")]
    Compress {
        /// The compression.
        compression: InitramfsCompression,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Assembles the initramfs tree. `init` is the static `berth-init` binary (stage 1 runs it as
/// `/init`); `root_image` the erofs image built from the root tree.
pub fn initramfs_tree(
    init: &Path,
    index: &ModuleIndex,
    modules: &ModuleSet,
    root_image: &Path,
) -> Result<Tree, InitramfsError> {
    let mut tree = Tree::new();
    tree.file("init", 0o755, init)?;
    tree.dir("dev", 0o755)?;
    tree.char_device("dev/console", 0o600, 5, 1)?;
    let image = Path::new(in_tree(paths::ROOT_IMAGE));
    for dir in [Path::new("proc"), Path::new("sys"), Path::new("sysroot")]
        .into_iter()
        .chain(image.parent())
    {
        tree.dir(dir, 0o755)?;
    }
    let prefix = Path::new(in_tree(paths::MODULES_DIR)).join(index.release());
    index.add_to_tree(modules, &mut tree, &prefix)?;
    tree.file(image, 0o644, root_image)?;
    Ok(tree)
}

/// Writes `tree` as a newc archive, compressed, into `out`. Returns the uncompressed size.
pub fn write(
    tree: &Tree,
    out: &mut File,
    compression: InitramfsCompression,
    epoch: u32,
) -> Result<u64, InitramfsError> {
    let compress_err = |source| InitramfsError::Compress {
        compression,
        source,
    };
    let buffered = BufWriter::with_capacity(1 << 20, out);
    let encoder: Box<dyn FinishWrite + '_> = match compression {
        InitramfsCompression::None => Box::new(buffered),
        // The gzip header's mtime is 0 and its OS byte fixed by flate2: reproducible.
        InitramfsCompression::Gzip => Box::new(
            flate2::GzBuilder::new()
                .mtime(0)
                .write(buffered, flate2::Compression::best()),
        ),
        // Single-threaded libzstd output depends only on the input and the level.
        InitramfsCompression::Zstd => {
            let mut enc = zstd::Encoder::new(buffered, ZSTD_LEVEL).map_err(compress_err)?;
            enc.include_checksum(true).map_err(compress_err)?;
            Box::new(enc)
        }
    };
    let mut cpio = CpioWriter::new(encoder, epoch);
    for (path, node) in tree.iter() {
        let name = path.to_string_lossy();
        match node {
            Node::Dir { mode } => cpio.dir(&name, *mode)?,
            Node::File { mode, source } => match source {
                Source::Bytes(data) => cpio.file(&name, *mode, data)?,
                Source::File(from) => {
                    let mut f = File::open(from).map_err(crate::fsutil::io_err("open", from))?;
                    let size = f
                        .metadata()
                        .map_err(crate::fsutil::io_err("stat", from))?
                        .len();
                    cpio.file_from(&name, *mode, size, &mut f)?
                }
            },
            Node::Symlink { target } => cpio.symlink(&name, target)?,
            Node::CharDevice { mode, major, minor } => {
                cpio.char_device(&name, *mode, *major, *minor)?
            }
        }
    }
    let size = cpio.offset();
    let encoder = cpio.finish()?;
    encoder.finish_write().map_err(compress_err)?;
    Ok(size + trailer_len())
}

/// Size of the trailer entry (110-byte header + "TRAILER!!!\0", padded to 4).
fn trailer_len() -> u64 {
    (110u64 + 11).next_multiple_of(4)
}

/// Finishing a possibly-compressing writer: flushes buffers and writes the compressor's end.
trait FinishWrite: Write {
    fn finish_write(self: Box<Self>) -> io::Result<()>;
}

impl<W: Write> FinishWrite for BufWriter<W> {
    fn finish_write(mut self: Box<Self>) -> io::Result<()> {
        self.flush()
    }
}

impl<W: Write> FinishWrite for GzEncoder<W> {
    fn finish_write(self: Box<Self>) -> io::Result<()> {
        self.finish()?.flush()
    }
}

impl<W: Write> FinishWrite for zstd::Encoder<'_, W> {
    fn finish_write(self: Box<Self>) -> io::Result<()> {
        self.finish()?.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::read_archive;
    use std::io::Read;

    fn tree() -> Tree {
        let mut t = Tree::new();
        t.bytes("init", 0o755, b"\x7fELF".to_vec()).unwrap();
        t.dir("dev", 0o755).unwrap();
        t.char_device("dev/console", 0o600, 5, 1).unwrap();
        t.bytes("berth/root.erofs", 0o644, vec![1u8; 10_000])
            .unwrap();
        t
    }

    fn written(compression: InitramfsCompression, epoch: u32) -> (Vec<u8>, u64) {
        let mut f = tempfile::tempfile().unwrap();
        let size = write(&tree(), &mut f, compression, epoch).unwrap();
        use std::io::Seek;
        f.rewind().unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        (data, size)
    }

    #[test]
    fn every_compression_round_trips() {
        for compression in [
            InitramfsCompression::None,
            InitramfsCompression::Gzip,
            InitramfsCompression::Zstd,
        ] {
            let (data, size) = written(compression, 42);
            let plain = match compression {
                InitramfsCompression::None => data.clone(),
                InitramfsCompression::Gzip => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&data[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                InitramfsCompression::Zstd => zstd::decode_all(&data[..]).unwrap(),
            };
            assert_eq!(plain.len() as u64, size, "{compression}");
            let entries = read_archive(&plain).unwrap();
            let names: Vec<_> = entries.iter().map(|(h, _)| h.name.as_str()).collect();
            assert_eq!(
                names,
                ["berth", "berth/root.erofs", "dev", "dev/console", "init"]
            );
            assert!(entries.iter().all(|(h, _)| h.mtime == 42));
            assert_eq!(
                written(compression, 42).0,
                data,
                "{compression} not reproducible"
            );
            assert_ne!(
                written(compression, 43).0,
                data,
                "{compression} ignores the epoch"
            );
        }
    }
}
