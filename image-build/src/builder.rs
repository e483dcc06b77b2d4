//! The build pipeline: definition → kernel → module sets → root tree → erofs → initramfs →
//! outputs. Outputs are written to temporary files in the output directory and renamed into
//! place only once everything succeeded (the manifest last), so a failed build never leaves a
//! mix of old and new artefacts.

use std::fs;
use std::path::{Path, PathBuf};

use berth_layout::paths;

use crate::definition::ImageDefinition;
use crate::epoch::EpochSource;
use crate::erofs;
use crate::error::Error;
use crate::fsutil::{self, io_err, AtomicFile};
use crate::initramfs;
use crate::kernel::{self, Kernel};
use crate::manifest::{self, Artefact, InitramfsInfo, Manifest, RootInfo, Sizes};
use crate::modules::ModuleIndex;
use crate::rootfs::{self, RootInputs};

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelInput {
    /// The definition's Debian package, cached under this directory.
    Apt {
        /// The cache directory (`$BERTH_CACHE_DIR` or `/var/cache/berth`).
        cache_dir: PathBuf,
    },
    /// Local files; apt is not used.
    Local {
        /// The kernel image.
        vmlinuz: PathBuf,
        /// `lib/modules/<release>/` with `modules.dep`.
        modules_dir: PathBuf,
    },
}

/// Everything `berth-image build` needs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Directory holding the static `berth` (and `berth-test-agent` for test images).
    pub bin_dir: PathBuf,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// Image definition file.
    pub definition: PathBuf,
    /// Directory with `init.toml` and `berthd.toml`.
    pub config_dir: PathBuf,
    /// Build a test image.
    pub test: bool,
    /// Add ZFS: modules built with dkms for the image's kernel ([`crate::zfs`]), `zpool` and
    /// `zfs` with their libraries.
    pub zfs: bool,
    /// Kernel source.
    pub kernel: KernelInput,
    /// Timestamp for every mtime.
    pub source_date_epoch: u32,
    /// Where the timestamp came from.
    pub epoch_source: EpochSource,
}

/// What was built.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The manifest written to `manifest.json`.
    pub manifest: Manifest,
}

/// Output file names.
pub const VMLINUZ: &str = "vmlinuz";
/// Output file names.
pub const INITRAMFS: &str = "initramfs.img";
/// Output file names.
pub const CMDLINE: &str = "cmdline";
/// Output file names.
pub const MANIFEST: &str = "manifest.json";

/// The archives for `/usr/share/berth/images`: the demo image first (when enabled), then
/// `[root] preload` in order, relative paths against the definition's directory.
fn preload_archives(
    def: &ImageDefinition,
    opts: &BuildOptions,
) -> Result<Vec<rootfs::Preload>, rootfs::RootfsError> {
    let mut out = Vec::new();
    if def.root.demo_image {
        // The package cache lives next to the kernel's (`--cache-dir`).
        let cache_dir = match &opts.kernel {
            KernelInput::Apt { cache_dir } => cache_dir.clone(),
            KernelInput::Local { .. } => PathBuf::from("/var/cache/berth"),
        };
        let demo = crate::demo::build(&cache_dir, opts.source_date_epoch)?;
        out.push(rootfs::Preload {
            name: crate::demo::archive_name().into(),
            source: rootfs::PreloadSource::Bytes(demo.archive),
        });
    }
    let base = opts
        .definition
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for given in &def.root.preload {
        let path = base.join(given);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let err = |message: &str| rootfs::RootfsError::Preload {
            path: path.clone(),
            message: message.into(),
        };
        if !name.ends_with(".tar") {
            return Err(err("not a .tar archive (OCI layout or docker save)"));
        }
        if !path.is_file() {
            return Err(err("no such file"));
        }
        if out.iter().any(|p| p.name == name) {
            return Err(err("two archives with this file name"));
        }
        out.push(rootfs::Preload {
            name,
            source: rootfs::PreloadSource::File(path),
        });
    }
    Ok(out)
}

/// Builds an image.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, Error> {
    let def = ImageDefinition::load(&opts.definition)?;
    let kernel: Kernel = match &opts.kernel {
        KernelInput::Apt { cache_dir } => kernel::from_apt(def.kernel.package.as_str(), cache_dir)?,
        KernelInput::Local {
            vmlinuz,
            modules_dir,
        } => kernel::local(vmlinuz, modules_dir)?,
    };

    let zfs = match (&opts.kernel, opts.zfs) {
        (KernelInput::Apt { cache_dir }, true) => Some(crate::zfs::prepare(&kernel, cache_dir)?),
        (KernelInput::Local { .. }, true) => return Err(crate::zfs::ZfsError::LocalKernel.into()),
        (_, false) => None,
    };
    let modules_dir = zfs
        .as_ref()
        .map_or(kernel.modules_dir.as_path(), |z| z.modules_dir.as_path());
    let index = ModuleIndex::load(modules_dir)?;
    let initramfs_modules = index.closure(
        &def.initramfs.modules,
        "initramfs.modules",
        &opts.definition,
    )?;
    let mut root_module_names = def.root.modules.clone();
    let mut host_tool_paths = def.root.host_tools.clone();
    if zfs.is_some() {
        // `zfs` brings its companions (spl, znvpair, …) through modules.dep.
        root_module_names.push("zfs".into());
        host_tool_paths.extend(crate::zfs::TOOLS.iter().map(|t| t.to_string()));
    }
    let root_modules = index.closure(&root_module_names, "root.modules", &opts.definition)?;

    let preload = preload_archives(&def, opts)?;
    let (mut root_tree, host_tools) = rootfs::root_tree(&RootInputs {
        bin_dir: &opts.bin_dir,
        config_dir: &opts.config_dir,
        test: opts.test,
        index: &index,
        modules: &root_modules,
        host_tools: &host_tool_paths,
        preload: &preload,
        source_date_epoch: opts.source_date_epoch,
    })?;
    if opts.test && zfs.is_some() {
        // ZFS test images carry the snapshotter conformance suite, run in the guest against
        // a real pool (qemu-tests/tests/zfs.rs).
        root_tree.file(
            paths::in_tree(paths::SNAPSHOTTER_CONFORMANCE),
            0o755,
            opts.bin_dir.join("berth-snapshotter-conformance"),
        )?;
        root_tree.bytes(
            crate::zfs::TEST_BERTHD_DROP_IN,
            0o644,
            crate::zfs::TEST_BERTHD_CONFIG,
        )?;
    }
    let root_files = root_tree.listing()?;
    let uuid = erofs::derive_uuid(&root_files, opts.source_date_epoch, def.root.compression);

    fs::create_dir_all(&opts.out_dir).map_err(io_err("create", &opts.out_dir))?;
    let work = tempfile::Builder::new()
        .prefix(".berth-image-work-")
        .tempdir_in(&opts.out_dir)
        .map_err(io_err("create a work directory in", &opts.out_dir))?;
    let stage = work.path().join("root");
    fs::create_dir(&stage).map_err(io_err("create", &stage))?;
    root_tree.stage(&stage)?;
    let root_image = work.path().join("root.erofs");
    erofs::mkfs(
        &stage,
        &root_image,
        def.root.compression,
        opts.source_date_epoch,
        &uuid,
    )?;
    let (root_image_size, root_image_sha) = fsutil::sha256_file(&root_image)?;

    let initramfs_tree = initramfs::initramfs_tree(
        &opts.bin_dir.join("berth-init"),
        &index,
        &initramfs_modules,
        &root_image,
    )?;
    let initramfs_files = initramfs_tree.listing()?;
    let mut initramfs_out = AtomicFile::create(&opts.out_dir.join(INITRAMFS))?;
    let initramfs_uncompressed = initramfs::write(
        &initramfs_tree,
        initramfs_out.file(),
        def.initramfs.compression,
        opts.source_date_epoch,
    )?;

    let cmdline = format!("{}\n", def.kernel.cmdline.as_str());
    let mut artefacts = std::collections::BTreeMap::new();
    artefacts.insert(VMLINUZ.to_string(), artefact(&kernel.vmlinuz)?);
    artefacts.insert(
        CMDLINE.to_string(),
        Artefact {
            size: cmdline.len() as u64,
            sha256: fsutil::sha256_bytes(cmdline.as_bytes()),
        },
    );
    // The initramfs temp file is complete; hash it before it is renamed.
    artefacts.insert(INITRAMFS.to_string(), artefact(initramfs_out.temp_path())?);

    let under =
        |dir: &'static str| move |p: &str| p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    let root_modules_size = manifest::total_size(&root_files, under(paths::ROOT_MODULES_DIR));
    let initramfs_modules_size = manifest::total_size(&initramfs_files, under(paths::MODULES_DIR));
    let root_tree_size = manifest::total_size(&root_files, |_| true);
    let initramfs_userland = manifest::total_size(&initramfs_files, |p| {
        !under(paths::MODULES_DIR)(p) && p != paths::ROOT_IMAGE
    });
    let preloaded_size = manifest::total_size(&root_files, under(paths::PRELOAD_DIR));
    let sizes = Sizes {
        userland: root_tree_size - root_modules_size - preloaded_size + initramfs_userland,
        preloaded_images: preloaded_size,
        kernel_modules: root_modules_size + initramfs_modules_size,
        root_tree: root_tree_size,
        root_image: root_image_size,
        initramfs_uncompressed,
    };

    let manifest = Manifest {
        format_version: manifest::FORMAT_VERSION,
        builder_version: env!("CARGO_PKG_VERSION").to_string(),
        source_date_epoch: opts.source_date_epoch,
        source_date_epoch_from: opts.epoch_source,
        test_image: opts.test,
        kernel: kernel.meta.clone(),
        cmdline: def.kernel.cmdline.as_str().to_string(),
        artefacts,
        sizes,
        initramfs: InitramfsInfo {
            compression: def.initramfs.compression,
            modules: initramfs_modules.names(),
            builtin_modules: initramfs_modules.builtin.clone(),
            files: initramfs_files,
        },
        root: RootInfo {
            format: def.root.format,
            compression: def.root.compression,
            uuid,
            image: Artefact {
                size: root_image_size,
                sha256: root_image_sha,
            },
            modules: root_modules.names(),
            builtin_modules: root_modules.builtin.clone(),
            host_tools,
            files: root_files,
        },
        zfs: zfs.map(|z| z.meta),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    json.push(b'\n');

    // Everything is ready: put it in place, manifest last.
    let mut vmlinuz_out = AtomicFile::create(&opts.out_dir.join(VMLINUZ))?;
    copy_into(&kernel.vmlinuz, &mut vmlinuz_out)?;
    let mut cmdline_out = AtomicFile::create(&opts.out_dir.join(CMDLINE))?;
    write_into(cmdline.as_bytes(), &mut cmdline_out)?;
    let mut manifest_out = AtomicFile::create(&opts.out_dir.join(MANIFEST))?;
    write_into(&json, &mut manifest_out)?;
    vmlinuz_out.commit()?;
    cmdline_out.commit()?;
    initramfs_out.commit()?;
    manifest_out.commit()?;
    drop(work);
    Ok(BuildReport { manifest })
}

fn artefact(path: &Path) -> Result<Artefact, Error> {
    let (size, sha256) = fsutil::sha256_file(path)?;
    Ok(Artefact { size, sha256 })
}

fn copy_into(src: &Path, dest: &mut AtomicFile) -> Result<(), Error> {
    let mut input = fs::File::open(src).map_err(io_err("open", src))?;
    let path = dest.dest().to_path_buf();
    std::io::copy(&mut input, dest.file()).map_err(io_err("write", &path))?;
    Ok(())
}

fn write_into(data: &[u8], dest: &mut AtomicFile) -> Result<(), Error> {
    use std::io::Write;
    let path = dest.dest().to_path_buf();
    dest.file()
        .write_all(data)
        .map_err(io_err("write", &path))?;
    Ok(())
}
