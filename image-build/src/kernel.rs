//! Which kernel goes into the image, and where its files are.
//!
//! Either local files (`--kernel VMLINUZ --modules-dir lib/modules/<release>`), or a Debian
//! package: a metapackage such as `linux-image-cloud-amd64` is resolved at build time to the
//! versioned package it depends on, downloaded with `apt-get download`, unpacked with
//! `dpkg-deb -x` and indexed with `depmod -b`, all cached under
//! `<cache>/kernel/<package>_<version>/` so later builds use no network.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::deb::{self, DebError};
use crate::fsutil::{self, io_err, FsError};

/// The kernel could not be resolved or prepared.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// apt knows no installable version of the package, even after `apt-get update`.
    #[error("apt has no candidate version of `{package}` (after apt-get update)")]
    NoCandidate {
        /// The package.
        package: String,
    },
    /// The unpacked package has no kernel image or module tree where expected.
    #[error("{what} not found in {}", dir.display())]
    Layout {
        /// What was looked for.
        what: String,
        /// Where.
        dir: PathBuf,
    },
    /// `--modules-dir` has no `modules.dep`.
    #[error("{} has no modules.dep: run `depmod -b <root> <release>` first, or give the lib/modules/<release> directory", .0.display())]
    NoModulesDep(PathBuf),
    /// A command or file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Provenance of the kernel, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelMeta {
    /// `apt` or `local`.
    pub source: &'static str,
    /// The package named in the definition (apt only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metapackage: Option<String>,
    /// The versioned package it resolved to (apt only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The package version (apt only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The kernel release (`uname -r`).
    pub release: String,
}

/// A kernel ready to be packed.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The bootable kernel image.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>/`, with `modules.dep`.
    pub modules_dir: PathBuf,
    /// Provenance.
    pub meta: KernelMeta,
}

/// Uses a kernel image and module directory from the build host. The release is the module
/// directory's name.
pub fn local(vmlinuz: &Path, modules_dir: &Path) -> Result<Kernel, KernelError> {
    fs::metadata(vmlinuz).map_err(io_err("read kernel image", vmlinuz))?;
    if !modules_dir.join("modules.dep").is_file() {
        return Err(KernelError::NoModulesDep(modules_dir.to_path_buf()));
    }
    let release = modules_dir
        .canonicalize()
        .map_err(io_err("resolve", modules_dir))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Kernel {
        vmlinuz: vmlinuz.to_path_buf(),
        modules_dir: modules_dir.to_path_buf(),
        meta: KernelMeta {
            source: "local",
            metapackage: None,
            package: None,
            version: None,
            release,
        },
    })
}

/// Resolves `package` through apt and prepares it in `cache_dir` (reused when present).
pub fn from_apt(package: &str, cache_dir: &Path) -> Result<Kernel, KernelError> {
    let kernel_dir = cache_dir.join("kernel");
    let (resolved, version) = match resolve_with_update(package) {
        Ok(found) => {
            remember(&kernel_dir, package, &found);
            found
        }
        // Offline (air-gapped build host, no apt lists): the last resolution still names a
        // complete cache entry, so the build needs no network at all.
        Err(err) => recall(&kernel_dir, package).ok_or(err)?,
    };
    let entry = kernel_dir.join(format!("{resolved}_{version}"));
    if !entry.join(".complete").is_file() {
        prepare(&resolved, &version, &kernel_dir, &entry)?;
    }
    let tree = entry.join("tree");
    let release = find_release(&tree)?;
    let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.is_file() {
        return Err(KernelError::Layout {
            what: format!("boot/vmlinuz-{release}"),
            dir: tree,
        });
    }
    Ok(Kernel {
        vmlinuz,
        modules_dir: tree.join("lib/modules").join(&release),
        meta: KernelMeta {
            source: "apt",
            metapackage: Some(package.to_string()),
            package: Some(resolved),
            version: Some(version),
            release,
        },
    })
}

/// [`resolve`], refreshing the apt lists once if the lookup fails (fresh container, stale
/// lists).
fn resolve_with_update(package: &str) -> Result<(String, String), KernelError> {
    match resolve(package) {
        Ok(found) => Ok(found),
        Err(_) => {
            fsutil::run(Command::new("apt-get").args(["update", "-qq"]))?;
            resolve(package)
        }
    }
}

/// File recording the last resolution of `package` in the cache.
fn resolution_file(kernel_dir: &Path, package: &str) -> PathBuf {
    kernel_dir.join(format!("{package}.resolved"))
}

/// Records a resolution; best effort (only an optimisation for offline builds).
fn remember(kernel_dir: &Path, package: &str, (resolved, version): &(String, String)) {
    let _ = fs::create_dir_all(kernel_dir);
    let _ = fs::write(
        resolution_file(kernel_dir, package),
        format!("{resolved} {version}\n"),
    );
}

/// The last recorded resolution of `package`, if its cache entry is complete.
fn recall(kernel_dir: &Path, package: &str) -> Option<(String, String)> {
    let text = fs::read_to_string(resolution_file(kernel_dir, package)).ok()?;
    let (resolved, version) = text.trim().split_once(' ')?;
    let entry = kernel_dir.join(format!("{resolved}_{version}"));
    entry
        .join(".complete")
        .is_file()
        .then(|| (resolved.to_string(), version.to_string()))
}

/// Metapackage → (versioned package, candidate version).
fn resolve(package: &str) -> Result<(String, String), KernelError> {
    let depends = fsutil::run(Command::new("apt-cache").args([
        "depends",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        package,
    ]))?;
    let resolved = kernel_dependency(&String::from_utf8_lossy(&depends.stdout))
        .unwrap_or_else(|| package.to_string());
    let policy = fsutil::run(Command::new("apt-cache").args(["policy", &resolved]))?;
    let version = candidate(&String::from_utf8_lossy(&policy.stdout)).ok_or_else(|| {
        KernelError::NoCandidate {
            package: resolved.clone(),
        }
    })?;
    Ok((resolved, version))
}

/// The first `linux-image-*` dependency in `apt-cache depends` output.
pub fn kernel_dependency(depends: &str) -> Option<String> {
    depends.lines().find_map(|line| {
        let line = line.trim().trim_start_matches('|');
        let dep = line.strip_prefix("Depends:")?.trim();
        (dep.starts_with("linux-image-") && !dep.starts_with('<')).then(|| dep.to_string())
    })
}

/// The `Candidate:` version in `apt-cache policy` output.
pub fn candidate(policy: &str) -> Option<String> {
    policy.lines().find_map(|line| {
        let version = line.trim().strip_prefix("Candidate:")?.trim();
        (version != "(none)" && !version.is_empty()).then(|| version.to_string())
    })
}

/// Downloads, unpacks and indexes one kernel package into `entry`, via a temporary directory
/// renamed into place so an interrupted build never leaves a half-made cache entry.
fn prepare(
    package: &str,
    version: &str,
    kernel_dir: &Path,
    entry: &Path,
) -> Result<(), KernelError> {
    fs::create_dir_all(kernel_dir).map_err(io_err("create", kernel_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(kernel_dir)
        .map_err(io_err("create a temporary directory in", kernel_dir))?;
    let tree = tmp.path().join("tree");
    deb::download_and_extract(&[format!("{package}={version}")], tmp.path(), &tree).map_err(
        |err| match err {
            DebError::NoDeb { dir } => KernelError::Layout {
                what: format!("{package}*.deb after apt-get download"),
                dir,
            },
            DebError::Fs(e) => e.into(),
        },
    )?;
    let release = find_release(&tree)?;
    fsutil::run(Command::new("depmod").arg("-b").arg(&tree).arg(&release))?;
    fs::write(
        tmp.path().join(".complete"),
        format!("{package} {version} {release}\n"),
    )
    .map_err(io_err("write", tmp.path()))?;
    let tmp_path = tmp.path().to_path_buf();
    match fs::rename(&tmp_path, entry) {
        Ok(()) => {
            // Renamed: nothing left for the TempDir guard to remove.
            let _ = tmp.keep();
            Ok(())
        }
        // A concurrent build finished first (the rename fails onto its non-empty directory);
        // theirs is as good as ours, and ours is removed with `tmp`.
        Err(_) if entry.join(".complete").is_file() => Ok(()),
        Err(e) => Err(io_err("rename into place", entry)(e).into()),
    }
}

/// The single `lib/modules/<release>` directory of an unpacked kernel package.
fn find_release(tree: &Path) -> Result<String, KernelError> {
    let dir = tree.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&dir)
        .map_err(io_err("list", &dir))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(KernelError::Layout {
            what: format!("exactly one kernel release (found {releases:?})"),
            dir,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache_depends() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            kernel_dependency(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let versioned = "linux-image-6.1.0-56-cloud-amd64\n  Depends: kmod\n  Depends: linux-base\n |Depends: initramfs-tools\n  Depends: <linux-initramfs-tool>\n";
        assert_eq!(kernel_dependency(versioned), None);
    }

    #[test]
    fn recalls_only_complete_entries() {
        let dir = tempfile::tempdir().unwrap();
        let found = (
            "linux-image-6.1.0-9-cloud-amd64".to_string(),
            "6.1.1-1".to_string(),
        );
        remember(dir.path(), "linux-image-cloud-amd64", &found);
        assert_eq!(recall(dir.path(), "linux-image-cloud-amd64"), None);
        let entry = dir.path().join("linux-image-6.1.0-9-cloud-amd64_6.1.1-1");
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join(".complete"), "").unwrap();
        assert_eq!(recall(dir.path(), "linux-image-cloud-amd64"), Some(found));
        assert_eq!(recall(dir.path(), "linux-image-amd64"), None);
    }

    #[test]
    fn parses_apt_cache_policy() {
        let out = "linux-image-cloud-amd64:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n";
        assert_eq!(candidate(out).as_deref(), Some("6.1.192-2"));
        assert_eq!(
            candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(candidate(""), None);
    }
}
