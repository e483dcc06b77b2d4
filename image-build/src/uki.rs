//! The unified kernel image (UKI): kernel, initramfs, command line and an os-release in one
//! EFI executable, so the whole immutable OS is one file that firmware can verify and a boot
//! manager can keep in two slots.
//!
//! The executable is systemd's EFI stub (`linuxx64.efi.stub`, Debian package
//! `systemd-boot-efi`) with four sections appended by `objcopy`, laid out the way systemd's
//! `ukify` does it: each new section starts at the next 4 KiB boundary after the end of the
//! previous one, beginning after the stub's last section, so no section overlaps another in
//! memory. `.linux` comes last (the kernel may use memory past its image while it boots).
//! At boot the stub measures and hands the `.initrd` to the kernel and passes `.cmdline`;
//! systemd-boot reads `.osrel` for the entry's title and version.
//!
//! Reproducibility: `objcopy` stamps the PE header with the current time (binutils 2.40 has
//! no option or environment variable for PE), so the stamp is rewritten to
//! `SOURCE_DATE_EPOCH` afterwards and the PE checksum recomputed. Signing (optional) uses
//! `sbsign` with the user's key and certificate; see `docs/upgrades.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_layout::pe::{self, PeSections};
use berth_layout::slots::{CMDLINE, INITRD, LINUX, OSREL, UKI_SECTIONS};

use crate::fsutil::{self, io_err, FsError};

/// Debian's systemd EFI stub.
pub const DEFAULT_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// Alignment of the appended sections in memory (what ukify uses).
const SECTION_ALIGN: u64 = 4096;

/// Building a UKI failed.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The stub (or a UKI being read) is not a PE32+ image we can lay sections after.
    #[error("{} is not a usable PE32+ EFI executable: {reason}", path.display())]
    NotPe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The stub already has one of the sections we add.
    #[error("{} already has a {section} section; pass the bare systemd stub, not a UKI", path.display())]
    SectionExists {
        /// The stub.
        path: PathBuf,
        /// The section name.
        section: String,
    },
    /// The command line is not one line of printable text.
    #[error("the kernel command line must be one line without control characters: {0:?}")]
    Cmdline(String),
    /// Reading, writing or running a tool failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What goes into a UKI.
#[derive(Debug, Clone)]
pub struct UkiInputs {
    /// The EFI stub.
    pub stub: PathBuf,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line (one line, no trailing newline needed).
    pub cmdline: String,
    /// os-release text for `.osrel` (see [`osrel`]).
    pub osrel: String,
    /// PE timestamp.
    pub source_date_epoch: u32,
}

/// One section as placed in the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Section name (`.osrel`).
    pub name: &'static str,
    /// Virtual address (absolute, image base included, as objcopy wants it).
    pub vma: u64,
    /// Size in bytes.
    pub size: u64,
}

/// The os-release for `.osrel`, the one init reads a slot's version from.
pub use berth_layout::slots::osrel;

/// Where the appended sections go: from the end of the stub's last section (image base
/// included), each at the next [`SECTION_ALIGN`] boundary.
pub fn place(end_of_stub: u64, sections: &[(&'static str, u64)]) -> Vec<Placement> {
    let mut next = end_of_stub;
    sections
        .iter()
        .map(|&(name, size)| {
            let vma = next.div_ceil(SECTION_ALIGN) * SECTION_ALIGN;
            next = vma + size;
            Placement { name, vma, size }
        })
        .collect()
}

/// The section table of the PE32+ image `data` (read from `path`, for errors).
pub fn pe_sections(data: &[u8], path: &Path) -> Result<PeSections, UkiError> {
    PeSections::parse(data).map_err(|e| UkiError::NotPe {
        path: path.to_path_buf(),
        reason: e.0,
    })
}

/// Builds the UKI at `out` (written to a temporary name beside it, then renamed).
pub fn build(inputs: &UkiInputs, out: &Path) -> Result<Vec<Placement>, UkiError> {
    let cmdline = inputs.cmdline.trim_end_matches('\n');
    if cmdline.chars().any(char::is_control) {
        return Err(UkiError::Cmdline(cmdline.to_string()));
    }
    let stub_data = std::fs::read(&inputs.stub).map_err(io_err("read", &inputs.stub))?;
    let stub = pe_sections(&stub_data, &inputs.stub)?;
    for section in &stub.sections {
        if UKI_SECTIONS.contains(&section.name.as_str()) {
            return Err(UkiError::SectionExists {
                path: inputs.stub.clone(),
                section: section.name.clone(),
            });
        }
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".berth-uki-")
        .tempdir_in(dir)
        .map_err(io_err("create a work directory in", dir))?;
    let osrel_path = work.path().join("osrel");
    std::fs::write(&osrel_path, &inputs.osrel).map_err(io_err("write", &osrel_path))?;
    let cmdline_path = work.path().join("cmdline");
    // The stub passes .cmdline verbatim; a trailing NUL-free single line is what ukify writes.
    std::fs::write(&cmdline_path, cmdline).map_err(io_err("write", &cmdline_path))?;
    let size = |p: &Path| -> Result<u64, UkiError> {
        Ok(std::fs::metadata(p).map_err(io_err("stat", p))?.len())
    };
    let files: [(&'static str, &Path); 4] = [
        (OSREL, &osrel_path),
        (CMDLINE, &cmdline_path),
        (INITRD, &inputs.initrd),
        (LINUX, &inputs.vmlinuz),
    ];
    let mut sizes = Vec::new();
    for (name, path) in files {
        sizes.push((name, size(path)?));
    }
    let placements = place(stub.end(), &sizes);

    let tmp_out = work.path().join("uki.efi");
    let mut cmd = Command::new("objcopy");
    for ((name, path), p) in files.iter().zip(&placements) {
        cmd.arg("--add-section")
            .arg(format!("{name}={}", path.display()))
            .arg("--change-section-vma")
            .arg(format!("{name}={:#x}", p.vma));
    }
    cmd.arg(&inputs.stub).arg(&tmp_out);
    fsutil::run(&mut cmd)?;

    let mut data = std::fs::read(&tmp_out).map_err(io_err("read", &tmp_out))?;
    set_timestamp(&mut data, inputs.source_date_epoch, &tmp_out)?;
    std::fs::write(&tmp_out, &data).map_err(io_err("write", &tmp_out))?;
    std::fs::rename(&tmp_out, out).map_err(io_err("rename into", out))?;
    Ok(placements)
}

/// Offsets of the COFF `TimeDateStamp` and the optional header's `CheckSum` in `data`.
fn header_offsets(data: &[u8], path: &Path) -> Result<(usize, usize), UkiError> {
    let not_pe = |reason: &str| UkiError::NotPe {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let pe = data
        .get(0x3c..0x40)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(|| not_pe("truncated DOS header"))?;
    if data.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(not_pe("no PE signature"));
    }
    // PE signature (4) + COFF header: Machine (2), NumberOfSections (2), TimeDateStamp (4).
    let stamp = pe + 8;
    // Optional header starts after the 20-byte COFF header; CheckSum is at offset 64.
    let checksum = pe + 4 + 20 + 64;
    if data.len() < checksum + 4 {
        return Err(not_pe("truncated optional header"));
    }
    Ok((stamp, checksum))
}

/// Rewrites the PE timestamp and recomputes the checksum over the result.
pub fn set_timestamp(data: &mut [u8], epoch: u32, path: &Path) -> Result<(), UkiError> {
    let (stamp, checksum) = header_offsets(data, path)?;
    data[stamp..stamp + 4].copy_from_slice(&epoch.to_le_bytes());
    let sum = pe_checksum(data, checksum);
    data[checksum..checksum + 4].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The PE image checksum (what `CheckSumMappedFile` computes): a folded 16-bit sum of the
/// file's little-endian words, skipping the checksum field itself, plus the file length.
/// Written by hand: it is ten lines and no maintained crate exposes it on its own.
pub fn pe_checksum(data: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < data.len() {
        let word = if i == checksum_offset || i == checksum_offset + 2 {
            0
        } else {
            u64::from(data[i]) | data.get(i + 1).map_or(0, |&b| u64::from(b) << 8)
        };
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    (sum as u32).wrapping_add(data.len() as u32)
}

/// Reads `.osrel` (or any named section's raw bytes, trimmed to its virtual size) from a PE.
pub fn section_data(data: &[u8], name: &str, path: &Path) -> Result<Option<Vec<u8>>, UkiError> {
    pe::section_data(data, name).map_err(|e| UkiError::NotPe {
        path: path.to_path_buf(),
        reason: e.0,
    })
}

/// Signs `uki` in place with `sbsign` (package `sbsigntool`) for UEFI Secure Boot, using
/// the user's PEM key and certificate (enrolled in the machine's db).
pub fn sign(uki: &Path, key: &Path, cert: &Path) -> Result<(), UkiError> {
    let signed = uki.with_extension("efi.signed");
    fsutil::run(
        Command::new("sbsign")
            .arg("--key")
            .arg(key)
            .arg("--cert")
            .arg(cert)
            .arg("--output")
            .arg(&signed)
            .arg(uki),
    )?;
    std::fs::rename(&signed, uki).map_err(io_err("rename into", uki))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_follow_each_other_at_4k_boundaries() {
        let p = place(
            0x19134,
            &[
                (".osrel", 0x16),
                (".cmdline", 0x1d),
                (".initrd", 0x2001),
                (".linux", 10),
            ],
        );
        assert_eq!(
            p.iter().map(|p| p.vma).collect::<Vec<_>>(),
            vec![0x1a000, 0x1b000, 0x1c000, 0x1f000]
        );
        for w in p.windows(2) {
            assert!(w[0].vma + w[0].size <= w[1].vma, "{w:?} overlap");
        }
    }

    #[test]
    fn checksum_skips_its_own_field_and_adds_the_length() {
        // Words 0x0001, then the 4-byte checksum field (skipped), then 0x0003; plus length 8.
        let data = [1, 0, 0xff, 0xff, 0xff, 0xff, 3, 0];
        assert_eq!(pe_checksum(&data, 2), 1 + 3 + 8);
        // Carries fold back into the low 16 bits: 0xffff + 0x0002 = 0x1_0001 -> 0x0002.
        let data = [0xff, 0xff, 0, 0, 0, 0, 0x02, 0x00];
        assert_eq!(pe_checksum(&data, 2), 2 + 8);
    }

    /// Against the real stub: the layout starts after its last section, and our checksum
    /// equals the one the stub was shipped with (so the algorithm matches the toolchain's).
    #[test]
    fn real_stub_layout_and_checksum() {
        let stub = Path::new(DEFAULT_STUB);
        let Ok(data) = std::fs::read(stub) else {
            eprintln!(
                "SKIP real_stub_layout_and_checksum: {DEFAULT_STUB} missing (systemd-boot-efi)"
            );
            return;
        };
        let pe = pe_sections(&data, stub).unwrap();
        assert!(pe.sections.iter().any(|s| s.name == ".sdmagic"));
        assert!(pe.end() > 0x1000);
        let (_, checksum) = header_offsets(&data, stub).unwrap();
        let shipped = u32::from_le_bytes(data[checksum..checksum + 4].try_into().unwrap());
        assert_eq!(pe_checksum(&data, checksum), shipped);
    }

    /// Two builds of the same inputs are byte-identical, the sections read back, and the
    /// checksum is consistent.
    #[test]
    fn builds_a_reproducible_uki() {
        if !Path::new(DEFAULT_STUB).exists() {
            eprintln!("SKIP builds_a_reproducible_uki: {DEFAULT_STUB} missing (systemd-boot-efi)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let vmlinuz = dir.path().join("vmlinuz");
        let initrd = dir.path().join("initrd");
        std::fs::write(&vmlinuz, vec![0x5a; 70_000]).unwrap();
        std::fs::write(&initrd, vec![0xa5; 5_000]).unwrap();
        let inputs = UkiInputs {
            stub: DEFAULT_STUB.into(),
            vmlinuz,
            initrd,
            cmdline: "console=ttyS0 quiet\n".into(),
            osrel: osrel("7"),
            source_date_epoch: 1_700_000_000,
        };
        let a = dir.path().join("a.efi");
        let b = dir.path().join("b.efi");
        let placements = build(&inputs, &a).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        build(&inputs, &b).unwrap();
        let (da, db) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert!(da == db, "two builds differ");
        assert_eq!(placements.last().unwrap().name, ".linux");
        assert_eq!(
            section_data(&da, ".osrel", &a).unwrap().unwrap(),
            osrel("7").as_bytes()
        );
        assert_eq!(
            section_data(&da, ".cmdline", &a).unwrap().unwrap(),
            b"console=ttyS0 quiet"
        );
        let (stamp, checksum) = header_offsets(&da, &a).unwrap();
        assert_eq!(&da[stamp..stamp + 4], &1_700_000_000u32.to_le_bytes());
        let stored = u32::from_le_bytes(da[checksum..checksum + 4].try_into().unwrap());
        assert_eq!(pe_checksum(&da, checksum), stored);
        let pe = pe_sections(&da, &a).unwrap();
        let mut spans: Vec<(u64, u64)> = pe
            .sections
            .iter()
            .map(|s| (s.virtual_address, s.virtual_size))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "sections overlap: {spans:?}");
        }
    }
}
