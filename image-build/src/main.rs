//! `berth-image`: the command-line front end of the [`berth_image`] library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_image::{epoch, BuildOptions, KernelInput};
use clap::{Args, Parser, Subcommand};

mod cmd_uefi;

/// Builds berth's bootable artefacts.
#[derive(Debug, Parser)]
#[command(name = "berth-image", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build vmlinuz, initramfs.img, cmdline and manifest.json.
    ///
    /// Timestamps come from SOURCE_DATE_EPOCH, else the last git commit of the checkout
    /// holding the definition, else 0.
    Build(BuildArgs),
    /// Write PXE artefacts: vmlinuz, initramfs.img and an iPXE script (boot.ipxe) fetching
    /// them over HTTP (docs/pxe.md).
    Pxe(PxeArgs),
    /// Build a unified kernel image (UKI) from a `build` output directory.
    Uki(cmd_uefi::UkiArgs),
    /// Build a bootable GPT disk image (ESP with two UKI slots + BERTH_STATE).
    Disk(cmd_uefi::DiskArgs),
}

#[derive(Debug, Args)]
struct PxeArgs {
    /// A `berth-image build` output directory (vmlinuz, initramfs.img, cmdline).
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    /// Output directory (may be the image directory: then only boot.ipxe is added).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// HTTP URL of the directory serving vmlinuz and initramfs.img
    /// (iPXE settings such as ${next-server} are expanded by iPXE).
    #[arg(long, value_name = "URL")]
    base_url: String,
    /// Kernel command line replacing the image's `cmdline`.
    #[arg(long, value_name = "CMDLINE")]
    cmdline: Option<String>,
    /// Arguments added to the command line, e.g. `ip=dhcp` or
    /// `berth.config=http://10.0.0.1/node.toml` (repeatable).
    #[arg(long, value_name = "ARGS")]
    append: Vec<String>,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Directory with the static `berth` (and `berth-test-agent` with --test).
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Image definition.
    #[arg(long, value_name = "FILE", default_value = "configs/image.toml")]
    definition: PathBuf,
    /// Directory with init.toml and berthd.toml.
    #[arg(long, value_name = "DIR", default_value = "configs")]
    config_dir: PathBuf,
    /// Build a test image (adds the test agent and its service).
    #[arg(long)]
    test: bool,
    /// Add ZFS: zfs.ko and companions built with dkms for the image's kernel (cached under
    /// the cache directory), zpool and zfs with their libraries.
    #[arg(long)]
    zfs: bool,
    /// Cache for kernel packages.
    #[arg(
        long,
        value_name = "DIR",
        env = "BERTH_CACHE_DIR",
        default_value = "/var/cache/berth"
    )]
    cache_dir: PathBuf,
    /// Use this kernel image instead of the definition's package (needs --modules-dir).
    #[arg(long, value_name = "VMLINUZ", requires = "modules_dir")]
    kernel: Option<PathBuf>,
    /// The kernel's lib/modules/<release> directory, with modules.dep (needs --kernel).
    #[arg(long, value_name = "DIR", requires = "kernel")]
    modules_dir: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One readable cause chain, no backtrace: these are user-facing build errors.
            eprintln!("berth-image: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let args = match cli.command {
        Command::Build(args) => args,
        Command::Pxe(args) => return pxe(args),
        Command::Uki(args) => return cmd_uefi::uki(args),
        Command::Disk(args) => return cmd_uefi::disk(args),
    };
    let (source_date_epoch, epoch_source) = epoch::resolve(&args.definition)?;
    let kernel = match (args.kernel, args.modules_dir) {
        (Some(vmlinuz), Some(modules_dir)) => KernelInput::Local {
            vmlinuz,
            modules_dir,
        },
        _ => KernelInput::Apt {
            cache_dir: args.cache_dir,
        },
    };
    let opts = BuildOptions {
        bin_dir: args.bin_dir,
        out_dir: args.out,
        definition: args.definition,
        config_dir: args.config_dir,
        test: args.test,
        zfs: args.zfs,
        kernel,
        source_date_epoch,
        epoch_source,
    };
    let report = berth_image::build(&opts).context("image build failed")?;
    let m = &report.manifest;
    let size = |name: &str| m.artefacts.get(name).map(|a| a.size).unwrap_or(0);
    println!(
        "built {} in {}: kernel {} ({}), initramfs.img {} bytes ({}, {} uncompressed), \
root image {} bytes ({}), userland {} bytes, SOURCE_DATE_EPOCH={}",
        if m.test_image { "test image" } else { "image" },
        opts.out_dir.display(),
        m.kernel.release,
        m.kernel.package.as_deref().unwrap_or("local kernel"),
        size("initramfs.img"),
        m.initramfs.compression,
        m.sizes.initramfs_uncompressed,
        m.sizes.root_image,
        m.root.compression,
        m.sizes.userland,
        m.source_date_epoch,
    );
    Ok(())
}

fn pxe(args: PxeArgs) -> Result<()> {
    let opts = berth_image::pxe::PxeOptions {
        image_dir: args.image,
        out_dir: args.out,
        base_url: args.base_url,
        cmdline: args.cmdline,
        append: args.append,
    };
    let report = berth_image::pxe::write(&opts).context("writing PXE artefacts failed")?;
    println!(
        "wrote {} (vmlinuz {} bytes, initramfs.img {} bytes from {}); kernel command line: {}",
        report.script.display(),
        report.kernel_size,
        report.initramfs_size,
        opts.base_url,
        report.cmdline,
    );
    Ok(())
}
