//! The ZFS image variant (`berth-image build --zfs`): OpenZFS kernel modules built for exactly
//! the image's kernel, merged into a copy of its module tree.
//!
//! Debian ships ZFS as source (`zfs-dkms`, contrib). Installing that package on the build host
//! would build it for the *host's* kernels and ask a licence question; instead the `.deb`s are
//! fetched with `apt-get download` and unpacked with `dpkg-deb -x` into a scratch directory:
//! `zfs-dkms`, `linux-headers-<release>`, `linux-headers-<abi>-common` and the matching
//! `linux-kbuild-<major.minor>` (all at the kernel package's version). `dkms build` then runs
//! with its source and build trees inside the scratch directory (`--sourcetree`,
//! `--dkmstree`) and `--kernelsourcedir` pointing at the unpacked headers' `build` link, so
//! nothing on the build host changes. The headers use absolute `/usr/src/…` paths in two
//! places: the top `Makefile` includes the `-common` one (that line is rewritten), and
//! `lib/modules/<release>/{build,source}` (relinked into the scratch directory; zfs's
//! configure needs `source`, the `-common` tree, for the kernel interface checks).
//!
//! The build takes several minutes, so the result is cached under
//! `<cache>/zfs/<release>_<kernel version>_zfs-<zfs version>/`: `tree/lib/modules/<release>/`
//! is the kernel's module tree (hard links to the kernel cache entry) plus the ZFS modules in
//! `updates/dkms/`, indexed with `depmod -b`. The image builder then takes its module closures
//! from that tree, so `zfs` pulls `spl`, `znvpair`, `zcommon`, `icp`, `zavl`, `zlua`,
//! `zunicode` and `zzstd` through `modules.dep` like any other module.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::deb::{self, DebError};
use crate::fsutil::{self, io_err, FsError};
use crate::kernel::{self, Kernel};

/// The modules `zfs-dkms` builds; all must be present after the build.
pub const MODULES: &[&str] = &[
    "spl", "znvpair", "zcommon", "icp", "zavl", "zlua", "zunicode", "zzstd", "zfs",
];

/// The ZFS userland copied into ZFS images (from the build host's `zfsutils-linux`).
pub const TOOLS: &[&str] = &["/usr/sbin/zpool", "/usr/sbin/zfs"];

/// A berthd drop-in of ZFS test images (berthd.toml imports `/etc/berth/berthd.d/*.toml`):
/// the zfs snapshotter on `tank/berth`. The QEMU scenario boots without that dataset (the
/// plugin is skipped with the reason), creates it and restarts berthd to use it.
pub const TEST_BERTHD_DROP_IN: &str = "etc/berth/berthd.d/50-zfs-test.toml";

/// The contents of [`TEST_BERTHD_DROP_IN`].
pub const TEST_BERTHD_CONFIG: &str =
    "# ZFS test image: the zfs snapshotter on tank/berth (qemu-tests/tests/zfs.rs).\n\
[plugins.\"io.containerd.snapshotter.v1.zfs\"]\n\
dataset = \"tank/berth\"\n";

/// The Debian package with the module source.
const DKMS_PACKAGE: &str = "zfs-dkms";

/// The ZFS modules could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// The image's kernel does not come from apt, so there are no matching headers to fetch.
    #[error("--zfs needs the kernel from the definition's Debian package (not --kernel/--modules-dir): the modules are built against that package's headers")]
    LocalKernel,
    /// apt has no candidate for a package (contrib missing from the apt sources?).
    #[error("apt has no candidate version of `{package}`: is `contrib` in the Debian apt sources? (scripts/install-deps.sh adds it)")]
    NoCandidate {
        /// The package.
        package: String,
    },
    /// The kernel release does not have the `<abi>-<flavour>` shape of Debian kernels.
    #[error("kernel release {release:?} is not a Debian `<abi>-<flavour>` release")]
    Release {
        /// The release.
        release: String,
    },
    /// Something expected after a step was not there.
    #[error("{what} not found in {}", dir.display())]
    Layout {
        /// What was looked for.
        what: String,
        /// Where.
        dir: PathBuf,
    },
    /// A command or file operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Provenance of the ZFS modules, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZfsMeta {
    /// The `zfs-dkms` package version.
    pub dkms_version: String,
    /// The kernel release the modules were built for.
    pub release: String,
    /// The module names.
    pub modules: Vec<String>,
}

/// A module tree with the ZFS modules in it.
#[derive(Debug, Clone)]
pub struct ZfsModules {
    /// `lib/modules/<release>/` with `modules.dep`, kernel modules and ZFS modules.
    pub modules_dir: PathBuf,
    /// Provenance.
    pub meta: ZfsMeta,
}

/// Returns the cached merged module tree for `kernel`, building it when missing.
pub fn prepare(kernel: &Kernel, cache_dir: &Path) -> Result<ZfsModules, ZfsError> {
    let Some(kernel_version) = kernel.meta.version.clone() else {
        return Err(ZfsError::LocalKernel);
    };
    let release = kernel.meta.release.clone();
    let zfs_dir = cache_dir.join("zfs");
    let dkms_version = match candidate(DKMS_PACKAGE) {
        Ok(v) => {
            let _ = fs::create_dir_all(&zfs_dir);
            let _ = fs::write(zfs_dir.join(format!("{DKMS_PACKAGE}.resolved")), &v);
            v
        }
        // Offline: the last resolution, when its entry is complete.
        Err(e) => fs::read_to_string(zfs_dir.join(format!("{DKMS_PACKAGE}.resolved")))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|v| {
                entry_dir(&zfs_dir, &release, &kernel_version, v)
                    .join(".complete")
                    .is_file()
            })
            .ok_or(e)?,
    };
    let entry = entry_dir(&zfs_dir, &release, &kernel_version, &dkms_version);
    if !entry.join(".complete").is_file() {
        build(kernel, &kernel_version, &dkms_version, &zfs_dir, &entry)?;
    }
    let modules_dir = entry.join("tree/lib/modules").join(&release);
    Ok(ZfsModules {
        modules_dir,
        meta: ZfsMeta {
            dkms_version,
            release,
            modules: MODULES.iter().map(|m| m.to_string()).collect(),
        },
    })
}

/// The cache entry for one kernel and one ZFS version.
fn entry_dir(zfs_dir: &Path, release: &str, kernel_version: &str, dkms_version: &str) -> PathBuf {
    zfs_dir.join(format!("{release}_{kernel_version}_zfs-{dkms_version}"))
}

/// apt's candidate version of `package`.
fn candidate(package: &str) -> Result<String, ZfsError> {
    let out = fsutil::run(Command::new("apt-cache").args(["policy", package]))?;
    kernel::candidate(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| ZfsError::NoCandidate {
        package: package.to_string(),
    })
}

/// The Debian header packages of a kernel release such as `6.1.0-56-cloud-amd64`:
/// (`linux-headers-6.1.0-56-cloud-amd64`, `linux-headers-6.1.0-56-common`,
/// `linux-kbuild-6.1`).
pub fn header_packages(release: &str) -> Option<(String, String, String)> {
    // The ABI is `<major>.<minor>.<patch>-<abinum>`; the flavour is the rest.
    let mut parts = release.splitn(3, '-');
    let (version, abinum, flavour) = (parts.next()?, parts.next()?, parts.next()?);
    if flavour.is_empty() || !abinum.chars().all(|c| c.is_ascii_digit()) || abinum.is_empty() {
        return None;
    }
    let mut v = version.split('.');
    let (major, minor) = (v.next()?, v.next()?);
    Some((
        format!("linux-headers-{release}"),
        format!("linux-headers-{version}-{abinum}-common"),
        format!("linux-kbuild-{major}.{minor}"),
    ))
}

/// Downloads, builds and installs the modules into `entry` (through a temporary directory
/// renamed into place, so an interrupted build leaves no half-made entry).
fn build(
    kernel: &Kernel,
    kernel_version: &str,
    dkms_version: &str,
    zfs_dir: &Path,
    entry: &Path,
) -> Result<(), ZfsError> {
    let release = &kernel.meta.release;
    let (headers, common, kbuild) = header_packages(release).ok_or_else(|| ZfsError::Release {
        release: release.clone(),
    })?;
    fs::create_dir_all(zfs_dir).map_err(io_err("create", zfs_dir))?;
    let tmp = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(zfs_dir)
        .map_err(io_err("create a temporary directory in", zfs_dir))?;
    let debs = tmp.path().join("debs");
    fs::create_dir(&debs).map_err(io_err("create", &debs))?;
    eprintln!(
        "berth-image: building ZFS {dkms_version} modules for {release} (dkms, several minutes; cached afterwards)"
    );
    let src = tmp.path().join("src");
    let packages = [
        format!("{DKMS_PACKAGE}={dkms_version}"),
        format!("{headers}={kernel_version}"),
        format!("{common}={kernel_version}"),
        format!("{kbuild}={kernel_version}"),
    ];
    deb::download_and_extract(&packages, &debs, &src).map_err(|err| match err {
        DebError::NoDeb { dir } => ZfsError::Layout {
            what: format!("{DKMS_PACKAGE} and header .debs after apt-get download"),
            dir,
        },
        DebError::Fs(e) => e.into(),
    })?;
    let usr_src = src.join("usr/src");
    let headers_dir = usr_src.join(&headers);
    relocate_headers_makefile(&headers_dir, &usr_src)?;
    // The headers package's lib/modules/<release>/{build,source} are absolute links into
    // /usr/src; point them at the scratch copies. zfs's dkms.conf configures with
    // `--with-linux=<…>/source` (the -common tree, the real headers) and
    // `--with-linux-obj=<…>/build` (the flavour's generated files) when given `…/build`.
    let kdir = src.join("lib/modules").join(release);
    fs::create_dir_all(&kdir).map_err(io_err("create", &kdir))?;
    for (link, target) in [
        ("build", headers_dir.clone()),
        ("source", usr_src.join(&common)),
    ] {
        let path = kdir.join(link);
        let _ = fs::remove_file(&path);
        std::os::unix::fs::symlink(&target, &path).map_err(io_err("symlink", &path))?;
    }
    let zfs_version = source_version(&usr_src)?;

    let dkms_tree = tmp.path().join("dkms");
    fs::create_dir(&dkms_tree).map_err(io_err("create", &dkms_tree))?;
    fsutil::run(
        Command::new("dkms")
            .args(["build", "-m", "zfs", "-v", &zfs_version, "-k", release])
            .arg("--sourcetree")
            .arg(&usr_src)
            .arg("--dkmstree")
            .arg(&dkms_tree)
            .arg("--kernelsourcedir")
            .arg(kdir.join("build"))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null()),
    )?;
    let built = dkms_tree
        .join("zfs")
        .join(&zfs_version)
        .join(release)
        .join(std::env::consts::ARCH)
        .join("module");

    // Merged tree: hard links to the kernel's cached modules (same file system, no copy),
    // the ZFS modules under updates/dkms/, then depmod.
    let tree = tmp.path().join("tree");
    let modules_parent = tree.join("lib/modules");
    fs::create_dir_all(&modules_parent).map_err(io_err("create", &modules_parent))?;
    fsutil::run(
        Command::new("cp")
            .arg("-al")
            .arg(&kernel.modules_dir)
            .arg(modules_parent.join(release)),
    )?;
    let dest = modules_parent.join(release).join("updates/dkms");
    fs::create_dir_all(&dest).map_err(io_err("create", &dest))?;
    for m in MODULES {
        let file = format!("{m}.ko");
        let from = built.join(&file);
        if !from.is_file() {
            return Err(ZfsError::Layout {
                what: file,
                dir: built,
            });
        }
        fs::copy(&from, dest.join(&file)).map_err(io_err("copy", &from))?;
    }
    // The hard-linked modules.* index files must not be rewritten in place (they are the
    // kernel cache's): remove the links so depmod writes fresh files.
    for e in fs::read_dir(modules_parent.join(release))
        .map_err(io_err("list", &modules_parent))?
        .filter_map(Result::ok)
    {
        if e.file_name().to_string_lossy().starts_with("modules.")
            && e.file_type().is_ok_and(|t| t.is_file())
            && e.file_name() != "modules.order"
            && e.file_name() != "modules.builtin"
            && e.file_name() != "modules.builtin.modinfo"
        {
            fs::remove_file(e.path()).map_err(io_err("remove", &e.path()))?;
        }
    }
    fsutil::run(Command::new("depmod").arg("-b").arg(&tree).arg(release))?;
    // The scratch trees are large and no longer needed.
    for d in [&debs, &src, &dkms_tree] {
        let _ = fs::remove_dir_all(d);
    }
    fs::write(
        tmp.path().join(".complete"),
        format!("zfs-dkms {dkms_version} zfs {zfs_version} {release} {kernel_version}\n"),
    )
    .map_err(io_err("write", tmp.path()))?;
    let tmp_path = tmp.path().to_path_buf();
    match fs::rename(&tmp_path, entry) {
        Ok(()) => {
            let _ = tmp.keep();
            Ok(())
        }
        Err(_) if entry.join(".complete").is_file() => Ok(()),
        Err(e) => Err(io_err("rename into place", entry)(e).into()),
    }
}

/// Points the headers' `include /usr/src/<common>/Makefile` at the unpacked copy.
fn relocate_headers_makefile(headers_dir: &Path, usr_src: &Path) -> Result<(), ZfsError> {
    let makefile = headers_dir.join("Makefile");
    let text = fs::read_to_string(&makefile).map_err(io_err("read", &makefile))?;
    let prefix = format!("{}/", usr_src.display());
    let fixed = text.replace("/usr/src/", &prefix);
    fs::write(&makefile, fixed).map_err(io_err("write", &makefile))?;
    Ok(())
}

/// The ZFS source version: the `zfs-<version>` directory `zfs-dkms` unpacks under usr/src.
fn source_version(usr_src: &Path) -> Result<String, ZfsError> {
    fs::read_dir(usr_src)
        .map_err(io_err("list", usr_src))?
        .filter_map(Result::ok)
        .find_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix("zfs-")
                .map(str::to_string)
        })
        .ok_or_else(|| ZfsError::Layout {
            what: "zfs-<version> (from zfs-dkms)".into(),
            dir: usr_src.to_path_buf(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_packages_of_debian_releases() {
        assert_eq!(
            header_packages("6.1.0-56-cloud-amd64"),
            Some((
                "linux-headers-6.1.0-56-cloud-amd64".into(),
                "linux-headers-6.1.0-56-common".into(),
                "linux-kbuild-6.1".into()
            ))
        );
        assert_eq!(
            header_packages("6.1.0-9-amd64").map(|h| h.1),
            Some("linux-headers-6.1.0-9-common".into())
        );
        assert_eq!(header_packages("6.18.44-fc-v657"), None);
        assert_eq!(header_packages("6.1.0"), None);
    }

    #[test]
    fn makefile_include_is_relocated() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir
            .path()
            .join("usr/src/linux-headers-6.1.0-56-cloud-amd64");
        fs::create_dir_all(&h).unwrap();
        fs::write(
            h.join("Makefile"),
            "include /usr/src/linux-headers-6.1.0-56-common/Makefile\n",
        )
        .unwrap();
        relocate_headers_makefile(&h, &dir.path().join("usr/src")).unwrap();
        let text = fs::read_to_string(h.join("Makefile")).unwrap();
        assert_eq!(
            text,
            format!(
                "include {}/usr/src/linux-headers-6.1.0-56-common/Makefile\n",
                dir.path().display()
            )
        );
    }
}
