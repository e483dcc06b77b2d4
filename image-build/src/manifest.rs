//! `manifest.json`: what an image is made of — kernel provenance, every artefact's size and
//! SHA-256, both trees' file lists, and the sizes that matter for footprint tracking.
//! It holds no host paths or clock readings, so it is as reproducible as the artefacts.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::definition::{InitramfsCompression, RootCompression, RootFormat};
use crate::epoch::EpochSource;
use crate::kernel::KernelMeta;
use crate::tree::ListingEntry;

/// Version of this manifest's layout; bump on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// The whole manifest.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Version of berth-image that built it.
    pub builder_version: String,
    /// Every timestamp in the artefacts.
    pub source_date_epoch: u32,
    /// Where that timestamp came from.
    pub source_date_epoch_from: EpochSource,
    /// Whether this is a test image (with the test agent).
    pub test_image: bool,
    /// Kernel provenance.
    pub kernel: KernelMeta,
    /// The kernel command line.
    pub cmdline: String,
    /// Output files by name: `vmlinuz`, `initramfs.img`, `cmdline`.
    pub artefacts: BTreeMap<String, Artefact>,
    /// Sizes, uncompressed, in bytes.
    pub sizes: Sizes,
    /// The initramfs.
    pub initramfs: InitramfsInfo,
    /// The root image.
    pub root: RootInfo,
    /// The ZFS modules of a ZFS image (`--zfs`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zfs: Option<crate::zfs::ZfsMeta>,
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artefact {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
}

/// Footprint summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sizes {
    /// Everything but the kernel, its modules and the preloaded container images: the root
    /// tree's files outside `/usr/lib/modules` and `/usr/share/berth/images` plus the
    /// initramfs's `/init`.
    pub userland: u64,
    /// Preloaded container image archives (`/usr/share/berth/images`).
    pub preloaded_images: u64,
    /// Module files and indexes, root image and initramfs together.
    pub kernel_modules: u64,
    /// All regular files of the root tree.
    pub root_tree: u64,
    /// The root image file.
    pub root_image: u64,
    /// The initramfs cpio before compression.
    pub initramfs_uncompressed: u64,
}

/// Initramfs details.
#[derive(Debug, Clone, Serialize)]
pub struct InitramfsInfo {
    /// Compression of `initramfs.img`.
    pub compression: InitramfsCompression,
    /// Modules carried (dependencies included).
    pub modules: Vec<String>,
    /// Requested modules that are built into the kernel.
    pub builtin_modules: Vec<String>,
    /// Every entry.
    pub files: Vec<ListingEntry>,
}

/// Root image details.
#[derive(Debug, Clone, Serialize)]
pub struct RootInfo {
    /// File-system format.
    pub format: RootFormat,
    /// Compression inside the image.
    pub compression: RootCompression,
    /// File-system UUID (derived from the contents).
    pub uuid: String,
    /// The image file inside the initramfs.
    pub image: Artefact,
    /// Modules carried (dependencies included).
    pub modules: Vec<String>,
    /// Requested modules that are built into the kernel.
    pub builtin_modules: Vec<String>,
    /// Host programs carried with their libraries, and the packages they came from.
    pub host_tools: Vec<crate::hosttools::ToolInfo>,
    /// Every entry.
    pub files: Vec<ListingEntry>,
}

/// Total size of regular files in `files` whose path satisfies `keep`.
pub fn total_size(files: &[ListingEntry], keep: impl Fn(&str) -> bool) -> u64 {
    files
        .iter()
        .filter(|e| keep(&e.path))
        .filter_map(|e| e.size)
        .sum()
}
