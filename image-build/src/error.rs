//! The crate-level error: one variant per module, each carrying that module's own error.

use crate::{
    cpio, definition, epoch, erofs, fsutil, initramfs, kernel, modules, rootfs, tree, zfs,
};

/// Any failure while building an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image definition could not be read or is invalid.
    #[error(transparent)]
    Definition(#[from] definition::DefinitionError),
    /// The kernel could not be resolved, downloaded or unpacked.
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    /// A module list could not be resolved against `modules.dep`.
    #[error(transparent)]
    Modules(#[from] modules::ModulesError),
    /// The root tree could not be assembled.
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    /// A tree could not be staged or listed.
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    /// `mkfs.erofs` failed.
    #[error(transparent)]
    Erofs(#[from] erofs::ErofsError),
    /// The cpio archive could not be written.
    #[error(transparent)]
    Cpio(#[from] cpio::CpioError),
    /// The initramfs could not be written.
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    /// `SOURCE_DATE_EPOCH` is invalid.
    #[error(transparent)]
    Epoch(#[from] epoch::EpochError),
    /// The ZFS modules could not be built (`--zfs`).
    #[error(transparent)]
    Zfs(#[from] zfs::ZfsError),
    /// A file-system operation on the outputs failed.
    #[error(transparent)]
    Fs(#[from] fsutil::FsError),
}
