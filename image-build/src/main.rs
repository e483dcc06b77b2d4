//! `berth-image`: the command-line front end of the [`berth_image`] library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_image::{epoch, BuildOptions, KernelInput};
use clap::{Args, Parser, Subcommand};

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
    let Command::Build(args) = cli.command;
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
