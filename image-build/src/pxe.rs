//! PXE artefacts (`berth-image pxe`): the kernel and initramfs of a built image plus an iPXE
//! script, `boot.ipxe`, that fetches both over HTTP and boots them with a chosen kernel
//! command line.
//!
//! Why HTTP for the big files and TFTP (at most) for the script: TFTP moves one 512-byte
//! block (or one negotiated block) per round trip, which for tens of MB through QEMU's user
//! network under TCG takes minutes; iPXE's HTTP client streams over TCP. The usual chain is
//! firmware PXE → (TFTP) iPXE → (TFTP or HTTP) `boot.ipxe` → (HTTP) `vmlinuz` +
//! `initramfs.img`. The initramfs already carries the whole OS (the erofs root image inside
//! it), so a PXE node needs nothing else: it runs diskless unless a `BERTH_STATE` partition
//! exists (docs/state-disk.md). See docs/pxe.md.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use crate::builder::{CMDLINE, INITRAMFS, VMLINUZ};
use crate::fsutil::{self, io_err, FsError};

/// The iPXE script's file name.
pub const SCRIPT: &str = "boot.ipxe";

/// x86 `COMMAND_LINE_SIZE` (2048) minus the terminating NUL.
const MAX_CMDLINE: usize = 2047;

/// PXE artefacts could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PxeError {
    /// The image directory lacks an artefact (`berth-image build` not run there?).
    #[error("{} not found: run `berth-image build --out {}` first", path.display(), dir.display())]
    MissingArtefact {
        /// The missing file.
        path: PathBuf,
        /// The image directory given.
        dir: PathBuf,
    },
    /// The base URL is not an http(s) URL iPXE can fetch from.
    #[error("base URL {url:?}: {reason}")]
    BaseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The resulting kernel command line is unusable.
    #[error("kernel command line {cmdline:?}: {reason}")]
    Cmdline {
        /// The command line.
        cmdline: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the image or writing the outputs failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What `berth-image pxe` needs.
#[derive(Debug, Clone)]
pub struct PxeOptions {
    /// A `berth-image build` output directory (`vmlinuz`, `initramfs.img`, `cmdline`).
    pub image_dir: PathBuf,
    /// Where the PXE artefacts go (may equal `image_dir`).
    pub out_dir: PathBuf,
    /// URL of the directory the node fetches `vmlinuz` and `initramfs.img` from, e.g.
    /// `http://10.0.2.2:8080/berth` or `http://${next-server}/berth` (iPXE expands settings).
    pub base_url: String,
    /// Replaces the image's command line when set.
    pub cmdline: Option<String>,
    /// Arguments added after the command line (`ip=…`, `berth.config=…`), in order.
    pub append: Vec<String>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeReport {
    /// The kernel command line in the script.
    pub cmdline: String,
    /// `boot.ipxe`'s path.
    pub script: PathBuf,
    /// Sizes of `vmlinuz` and `initramfs.img`.
    pub kernel_size: u64,
    /// Size of `initramfs.img`.
    pub initramfs_size: u64,
}

/// Writes `vmlinuz`, `initramfs.img` and `boot.ipxe` into `opts.out_dir`.
pub fn write(opts: &PxeOptions) -> Result<PxeReport, PxeError> {
    let artefact = |name: &str| -> Result<PathBuf, PxeError> {
        let path = opts.image_dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(PxeError::MissingArtefact {
                path,
                dir: opts.image_dir.clone(),
            })
        }
    };
    let vmlinuz = artefact(VMLINUZ)?;
    let initramfs = artefact(INITRAMFS)?;
    let base = match &opts.cmdline {
        Some(cmdline) => cmdline.clone(),
        None => {
            let path = artefact(CMDLINE)?;
            fs::read_to_string(&path).map_err(io_err("read", &path))?
        }
    };
    let cmdline = compose_cmdline(&base, &opts.append)?;
    let script = render_script(&opts.base_url, &cmdline)?;

    fs::create_dir_all(&opts.out_dir).map_err(io_err("create", &opts.out_dir))?;
    let same_dir = fs::canonicalize(&opts.image_dir).ok() == fs::canonicalize(&opts.out_dir).ok();
    if !same_dir {
        fsutil::copy_atomic(&vmlinuz, &opts.out_dir.join(VMLINUZ))?;
        fsutil::copy_atomic(&initramfs, &opts.out_dir.join(INITRAMFS))?;
    }
    let script_path = opts.out_dir.join(SCRIPT);
    fsutil::write_atomic(&script_path, script.as_bytes())?;
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).map_err(io_err("stat", p));
    Ok(PxeReport {
        cmdline,
        script: script_path,
        kernel_size: size(&vmlinuz)?,
        initramfs_size: size(&initramfs)?,
    })
}

/// `base` (one line, trimmed) followed by each of `append`, checked to be one line that fits
/// the kernel's buffer.
pub fn compose_cmdline(base: &str, append: &[String]) -> Result<String, PxeError> {
    let parts = std::iter::once(base.trim()).chain(append.iter().map(|a| a.trim()));
    let cmdline = parts
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let fail = |reason| PxeError::Cmdline {
        cmdline: cmdline.clone(),
        reason,
    };
    if cmdline.contains(['\n', '\r', '\0']) {
        return Err(fail("must be a single line"));
    }
    // The script adds `initrd=initramfs.img ` in front (EFI stub convention).
    if cmdline.len() + INITRD_ARG.len() + 1 > MAX_CMDLINE {
        return Err(fail("longer than the kernel's 2047 bytes"));
    }
    Ok(cmdline)
}

/// Names the initrd for the kernel's EFI stub when iPXE boots under UEFI (it looks the image
/// up by name); a BIOS boot ignores it.
const INITRD_ARG: &str = "initrd=initramfs.img";

/// The iPXE script: fetch kernel and initramfs from `base_url`, boot with `cmdline`.
pub fn render_script(base_url: &str, cmdline: &str) -> Result<String, PxeError> {
    let base = check_base_url(base_url)?;
    let mut s = String::new();
    s.push_str("#!ipxe\n");
    s.push_str("# berth network boot, written by `berth-image pxe` (docs/pxe.md).\n");
    s.push_str("# Kernel and initramfs come over HTTP; the initramfs holds the whole OS.\n");
    // `base` is kept in a setting so an operator can override it by hand, and so the URL is
    // printed once on the console when something goes wrong.
    let _ = writeln!(s, "set berth-base {base}");
    s.push_str("echo berth: fetching ${berth-base}/vmlinuz and initramfs.img\n");
    let _ = writeln!(s, "kernel ${{berth-base}}/{VMLINUZ} {INITRD_ARG} {cmdline}");
    let _ = writeln!(s, "initrd ${{berth-base}}/{INITRAMFS}");
    s.push_str("boot\n");
    Ok(s)
}

/// The base URL without a trailing `/`, refused unless it is http(s) with a host.
fn check_base_url(url: &str) -> Result<&str, PxeError> {
    let fail = |reason| PxeError::BaseUrl {
        url: url.to_string(),
        reason,
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            fail("must start with http:// or https:// (iPXE fetches the kernel over HTTP)")
        })?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(fail("has no host"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail("contains whitespace"));
    }
    Ok(url.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_fetches_over_http_with_the_cmdline() {
        let cmdline = compose_cmdline(
            "console=ttyS0 quiet panic=-1\n",
            &["ip=10.0.2.15::10.0.2.2:255.255.255.0:n:eth0:off".into()],
        )
        .unwrap();
        let script = render_script("http://10.0.2.2:8080/berth/", &cmdline).unwrap();
        assert!(script.starts_with("#!ipxe\n"), "{script}");
        assert!(
            script.contains("set berth-base http://10.0.2.2:8080/berth\n"),
            "{script}"
        );
        assert!(script.contains(
            "kernel ${berth-base}/vmlinuz initrd=initramfs.img console=ttyS0 quiet panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0:n:eth0:off\n"
        ), "{script}");
        assert!(
            script.contains("initrd ${berth-base}/initramfs.img\nboot\n"),
            "{script}"
        );
    }

    #[test]
    fn ipxe_settings_in_the_base_url_are_kept() {
        let script = render_script("http://${next-server}/b", "quiet").unwrap();
        assert!(script.contains("set berth-base http://${next-server}/b\n"));
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for url in [
            "tftp://10.0.2.2/x",
            "10.0.2.2/x",
            "http://",
            "http:///x",
            "http://a b/",
        ] {
            let err = render_script(url, "quiet").unwrap_err().to_string();
            assert!(err.starts_with(&format!("base URL {url:?}: ")), "{err}");
        }
    }

    #[test]
    fn bad_cmdlines_are_refused() {
        let err = compose_cmdline("quiet", &["a\nb".into()]).unwrap_err();
        assert!(err.to_string().ends_with("must be a single line"), "{err}");
        let err = compose_cmdline(&"x".repeat(2040), &[]).unwrap_err();
        assert!(err.to_string().contains("2047 bytes"), "{err}");
    }

    #[test]
    fn writes_artefacts_and_names_missing_ones() {
        let image = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let opts = PxeOptions {
            image_dir: image.path().to_path_buf(),
            out_dir: out.path().join("pxe"),
            base_url: "http://10.0.2.2:8080".into(),
            cmdline: None,
            append: vec!["berth.config=http://10.0.2.2:8080/node.toml".into()],
        };
        let err = write(&opts).unwrap_err().to_string();
        assert!(
            err.contains("vmlinuz not found: run `berth-image build"),
            "{err}"
        );
        fs::write(image.path().join(VMLINUZ), b"kernel").unwrap();
        fs::write(image.path().join(INITRAMFS), b"initramfs!").unwrap();
        fs::write(image.path().join(CMDLINE), b"console=ttyS0 quiet\n").unwrap();
        let report = write(&opts).unwrap();
        assert_eq!(
            report.cmdline,
            "console=ttyS0 quiet berth.config=http://10.0.2.2:8080/node.toml"
        );
        assert_eq!((report.kernel_size, report.initramfs_size), (6, 10));
        let dir = out.path().join("pxe");
        assert_eq!(fs::read(dir.join(INITRAMFS)).unwrap(), b"initramfs!");
        let script = fs::read_to_string(dir.join(SCRIPT)).unwrap();
        assert!(script.contains("berth.config=http://10.0.2.2:8080/node.toml"));
        // Writing into the image directory itself adds only the script.
        let in_place = PxeOptions {
            out_dir: image.path().to_path_buf(),
            cmdline: Some("console=ttyS1".into()),
            ..opts
        };
        assert_eq!(
            write(&in_place).unwrap().cmdline,
            "console=ttyS1 berth.config=http://10.0.2.2:8080/node.toml"
        );
        assert!(image.path().join(SCRIPT).is_file());
    }
}
