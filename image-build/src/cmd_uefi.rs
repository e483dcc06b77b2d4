//! `berth-image uki` and `berth-image disk`: the UEFI artefacts, made from the output
//! directory of `berth-image build` (vmlinuz, initramfs.img, cmdline, manifest.json).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use berth_image::{disk, uki};
use clap::Args;

/// Where the UKI's parts come from and how it is labelled.
#[derive(Debug, Args)]
pub struct UkiSource {
    /// Output directory of `berth-image build`.
    #[arg(long, value_name = "DIR")]
    image: PathBuf,
    /// Version recorded in `.osrel` (shown by `berthctl system status`). Default:
    /// `<berth-image version>-<first 12 hex digits of the initramfs sha256>`.
    #[arg(long, value_name = "VERSION")]
    version: Option<String>,
    /// Words appended to the image's kernel command line (e.g. `berth.log.level=debug`).
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
    /// The systemd EFI stub.
    #[arg(long, value_name = "FILE", default_value = uki::DEFAULT_STUB)]
    stub: PathBuf,
    /// Sign the UKI for Secure Boot with this PEM private key (needs --sign-cert; sbsign).
    #[arg(long, value_name = "KEY", requires = "sign_cert")]
    sign_key: Option<PathBuf>,
    /// The PEM certificate matching --sign-key.
    #[arg(long, value_name = "CERT", requires = "sign_key")]
    sign_cert: Option<PathBuf>,
}

/// `berth-image uki`.
#[derive(Debug, Args)]
pub struct UkiArgs {
    #[command(flatten)]
    source: UkiSource,
    /// Output file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `berth-image disk`.
#[derive(Debug, Args)]
pub struct DiskArgs {
    #[command(flatten)]
    source: UkiSource,
    /// Output directory: `berth.efi` (the UKI, for upgrades), `disk.raw`, and `disk.qcow2`
    /// with --qcow2.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also write a qcow2 copy (qemu-img).
    #[arg(long)]
    qcow2: bool,
    /// ESP size in MiB (default: room for two slots of 1.5× this UKI, at least 64).
    #[arg(long, value_name = "MIB")]
    esp_size: Option<u64>,
    /// Size of the state partition in the image, in MiB; init grows it to fill the disk.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    state_size: u64,
    /// The boot manager (systemd-boot).
    #[arg(long, value_name = "FILE", default_value = disk::DEFAULT_BOOT_MANAGER)]
    boot_manager: PathBuf,
}

/// Builds a UKI at `out` from `source`; returns its version and SOURCE_DATE_EPOCH.
fn build_uki(source: &UkiSource, out: &Path) -> Result<(String, u32)> {
    let manifest_path = source.image.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (run `berth-image build` first)",
            manifest_path.display()
        )
    })?;
    let manifest: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let epoch = manifest["source_date_epoch"]
        .as_u64()
        .and_then(|e| u32::try_from(e).ok())
        .with_context(|| format!("{}: no valid source_date_epoch", manifest_path.display()))?;
    let version = match &source.version {
        Some(v) => v.clone(),
        None => {
            let builder = manifest["builder_version"].as_str().unwrap_or("0");
            let sha = manifest["artefacts"]["initramfs.img"]["sha256"]
                .as_str()
                .unwrap_or("");
            format!("{builder}-{}", &sha[..sha.len().min(12)])
        }
    };
    if version.is_empty()
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-~".contains(c))
    {
        bail!("--version {version:?}: use letters, digits and . _ + - ~ only");
    }
    let cmdline_path = source.image.join("cmdline");
    let mut cmdline = std::fs::read_to_string(&cmdline_path)
        .with_context(|| format!("reading {}", cmdline_path.display()))?
        .trim_end()
        .to_string();
    if let Some(extra) = &source.append {
        cmdline.push(' ');
        cmdline.push_str(extra.trim());
    }
    let inputs = uki::UkiInputs {
        stub: source.stub.clone(),
        vmlinuz: source.image.join("vmlinuz"),
        initrd: source.image.join("initramfs.img"),
        cmdline,
        osrel: uki::osrel(&version),
        source_date_epoch: epoch,
    };
    uki::build(&inputs, out).with_context(|| format!("building the UKI {}", out.display()))?;
    if let (Some(key), Some(cert)) = (&source.sign_key, &source.sign_cert) {
        uki::sign(out, key, cert).with_context(|| format!("signing {}", out.display()))?;
    }
    Ok((version, epoch))
}

/// `berth-image uki`.
pub fn uki(args: UkiArgs) -> Result<()> {
    let (version, _) = build_uki(&args.source, &args.out)?;
    let size = std::fs::metadata(&args.out).map(|m| m.len()).unwrap_or(0);
    println!(
        "built UKI {} ({size} bytes), version {version}",
        args.out.display()
    );
    Ok(())
}

/// `berth-image disk`.
pub fn disk(args: DiskArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let efi = args.out.join("berth.efi");
    let (version, epoch) = build_uki(&args.source, &efi)?;
    let opts = disk::DiskOptions {
        uki: efi.clone(),
        boot_manager: args.boot_manager,
        out: args.out.join("disk.raw"),
        qcow2: args.qcow2.then(|| args.out.join("disk.qcow2")),
        esp_mib: args.esp_size,
        state_mib: args.state_size,
        source_date_epoch: epoch,
    };
    let report = disk::build(&opts).context("building the disk image")?;
    println!(
        "built {} ({} bytes, sha256 {}): ESP {} MiB with slots a and b = UKI {version}, \
{} {} MiB (grows on first boot){}",
        opts.out.display(),
        report.size,
        report.sha256,
        report.esp_mib,
        disk::STATE_LABEL,
        report.state_mib,
        if args.qcow2 { ", and disk.qcow2" } else { "" }
    );
    Ok(())
}
