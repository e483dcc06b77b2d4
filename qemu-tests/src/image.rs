//! Image directories produced by `berth-image build`, and variants built on the fly.
//!
//! An image directory holds `vmlinuz`, `initramfs.img`, `cmdline` and `manifest.json`
//! (`docs/architecture.md`, "berth-image"). Scenarios boot the test image
//! (`BERTH_TEST_IMAGE`, default `<workspace>/out/image-test`, built by `make image-test`);
//! scenarios about bad configuration build a [`Variant`] with edited copies of `configs/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::process;

/// Environment variable naming the test image directory.
pub const TEST_IMAGE_ENV: &str = "BERTH_TEST_IMAGE";

/// Where the static build puts binaries (`scripts/build-static.sh`).
pub const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Hang guard for building one image variant.
pub const VARIANT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The workspace root (this crate's parent directory).
pub fn workspace_dir() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `target/x86_64-unknown-linux-gnu/release` of the workspace (honours `CARGO_TARGET_DIR`).
pub fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_dir().join(p)
            }
        })
        .unwrap_or_else(|| workspace_dir().join("target"));
    target.join(STATIC_TARGET).join("release")
}

/// A bootable image directory.
#[derive(Debug, Clone)]
pub struct Image {
    /// The directory.
    pub dir: PathBuf,
    /// `vmlinuz`.
    pub kernel: PathBuf,
    /// `initramfs.img`.
    pub initramfs: PathBuf,
    /// The image's kernel command line (`cmdline`, trimmed).
    pub cmdline: String,
}

impl Image {
    /// Opens an image directory, checking that its artefacts exist.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        for name in ["vmlinuz", "initramfs.img", "cmdline"] {
            if !dir.join(name).is_file() {
                return Err(Error::ImageMissing {
                    path: dir.join(name),
                });
            }
        }
        let cmdline = fs::read_to_string(dir.join("cmdline"))
            .map_err(Error::io(format!(
                "cannot read {}",
                dir.join("cmdline").display()
            )))?
            .trim()
            .to_string();
        Ok(Self {
            kernel: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.img"),
            cmdline,
            dir,
        })
    }

    /// The test image: `$BERTH_TEST_IMAGE` or `<workspace>/out/image-test`.
    pub fn test_image() -> Result<Self> {
        let dir = std::env::var_os(TEST_IMAGE_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_dir().join("out/image-test"));
        Self::open(dir)
    }

    /// `manifest.json`, parsed.
    pub fn manifest(&self) -> Result<serde_json::Value> {
        let path = self.dir.join("manifest.json");
        let text = fs::read_to_string(&path)
            .map_err(Error::io(format!("cannot read {}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| Error::Io {
            what: format!("cannot parse {}", path.display()),
            source: std::io::Error::other(e),
        })
    }

    /// Size of `initramfs.img` in bytes.
    pub fn initramfs_size(&self) -> Result<u64> {
        fs::metadata(&self.initramfs)
            .map(|m| m.len())
            .map_err(Error::io(format!(
                "cannot stat {}",
                self.initramfs.display()
            )))
    }

    /// Userland size from the manifest (`sizes.userland`: everything but the kernel and its
    /// modules).
    pub fn userland_size(&self) -> Result<u64> {
        userland_size(&self.manifest()?).ok_or_else(|| {
            Error::Manifest(format!(
                "{}/manifest.json has no sizes.userland",
                self.dir.display()
            ))
        })
    }
}

/// `sizes.userland` of a manifest.
pub fn userland_size(manifest: &serde_json::Value) -> Option<u64> {
    manifest.get("sizes")?.get("userland")?.as_u64()
}

/// A test image built with edited configuration; removed on drop.
#[derive(Debug)]
pub struct Variant {
    /// The built image.
    pub image: Image,
    _dir: TempDir,
}

/// Copies `configs/*.toml` to a scratch directory, lets the scenario edit them, then runs
/// `berth-image build --test` on them (the copied `image.toml` as the definition) with the
/// static binaries and the shared kernel cache.
#[derive(Debug)]
pub struct VariantBuilder {
    dir: TempDir,
    zfs: bool,
}

impl VariantBuilder {
    /// Starts from a copy of the workspace's `configs/` (the `*.toml` files and `certs.d/`).
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("berth-variant-")
            .tempdir()
            .map_err(Error::io("cannot create a scratch directory"))?;
        copy_tree(
            &workspace_dir().join("configs"),
            &dir.path().join("configs"),
        )?;
        Ok(Self { dir, zfs: false })
    }

    /// Builds a ZFS test image (`berth-image build --zfs`, as `make image-test-zfs`; the
    /// module build comes from the cache that target fills).
    pub fn zfs(mut self) -> Self {
        self.zfs = true;
        self
    }

    /// The configuration directory being edited.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("configs")
    }

    /// Rewrites `file` (e.g. `berthd.toml`) with `edit`.
    pub fn edit(self, file: &str, edit: impl FnOnce(String) -> String) -> Result<Self> {
        let path = self.config_dir().join(file);
        let text = fs::read_to_string(&path)
            .map_err(Error::io(format!("cannot read {}", path.display())))?;
        fs::write(&path, edit(text))
            .map_err(Error::io(format!("cannot write {}", path.display())))?;
        Ok(self)
    }

    /// Builds the image; prints how long it took.
    pub fn build(self) -> Result<Variant> {
        let release = release_dir();
        let berth_image = release.join("berth-image");
        if !berth_image.is_file() {
            return Err(Error::BinaryMissing {
                path: berth_image,
                env: None,
            });
        }
        let out = self.dir.path().join("image");
        let mut command = Command::new(&berth_image);
        command
            .current_dir(workspace_dir())
            .arg("build")
            .arg("--bin-dir")
            .arg(&release)
            .arg("--test")
            .arg("--config-dir")
            .arg(self.config_dir());
        let definition = self.config_dir().join("image.toml");
        if definition.is_file() {
            command.arg("--definition").arg(definition);
        }
        if self.zfs {
            command.arg("--zfs");
        }
        command.arg("--out").arg(&out);
        let output = process::run_ok(command, VARIANT_BUILD_TIMEOUT)?;
        println!(
            "built image variant in {:.1} s: {}",
            output.elapsed.as_secs_f64(),
            out.display()
        );
        Ok(Variant {
            image: Image::open(out)?,
            _dir: self.dir,
        })
    }
}

/// Copies regular files and directories from `from` into a new directory `to`.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir(to).map_err(Error::io(format!("cannot create {}", to.display())))?;
    let entries =
        fs::read_dir(from).map_err(Error::io(format!("cannot list {}", from.display())))?;
    for entry in entries {
        let path = entry
            .map_err(Error::io(format!("cannot list {}", from.display())))?
            .path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            fs::copy(&path, &target)
                .map_err(Error::io(format!("cannot copy {}", path.display())))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_image_says_how_to_build_it() {
        let tmp = tempfile::tempdir().unwrap();
        let e = Image::open(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("make image-test"), "{e}");
    }

    #[test]
    fn reads_the_userland_size() {
        let m = serde_json::json!({"sizes": {"userland": 15, "kernel_modules": 3}});
        assert_eq!(userland_size(&m), Some(15));
        assert_eq!(userland_size(&serde_json::json!({})), None);
    }
}
