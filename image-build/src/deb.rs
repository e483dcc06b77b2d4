//! Debian packages as build inputs: `apt-get download` into a directory, `dpkg-deb -x` into
//! a tree. The kernel, the demo image's busybox and the ZFS build's sources and headers all
//! come this way; callers cache the result themselves (a temporary directory renamed into
//! place), so an interrupted build never leaves half a package behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::fsutil::{self, io_err, FsError};

/// Fetching or unpacking packages failed.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// `apt-get download` succeeded but left no `.deb` behind.
    #[error("no .deb in {} after apt-get download", dir.display())]
    NoDeb {
        /// The download directory.
        dir: PathBuf,
    },
    /// Running apt-get or dpkg-deb, or listing the directory, failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// Downloads `packages` (`name=version`, as apt-get takes them) into `dir` and unpacks every
/// `.deb` found there into `tree` ([`extract_all`]). Returns the `.deb` files, which stay
/// in `dir`.
pub fn download_and_extract(
    packages: &[String],
    dir: &Path,
    tree: &Path,
) -> Result<Vec<PathBuf>, DebError> {
    fsutil::run(
        Command::new("apt-get")
            .args(["download", "-qq"])
            .args(packages)
            .current_dir(dir),
    )?;
    extract_all(dir, tree)
}

/// Unpacks every `.deb` in `dir` into `tree` (created by dpkg-deb), in name order; no
/// `.deb` at all is an error. Returns the `.deb` files.
pub fn extract_all(dir: &Path, tree: &Path) -> Result<Vec<PathBuf>, DebError> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io_err("list", dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    if debs.is_empty() {
        return Err(DebError::NoDeb {
            dir: dir.to_path_buf(),
        });
    }
    debs.sort();
    for deb in &debs {
        fsutil::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(tree))?;
    }
    Ok(debs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two packages built locally with `dpkg-deb --build` unpack into one tree; an empty
    /// directory is an error naming it. (apt-get itself needs the network: not tested here.)
    #[test]
    fn extracts_every_deb_and_refuses_none() {
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            eprintln!("SKIP extracts_every_deb_and_refuses_none: no dpkg-deb");
            return;
        }
        let work = tempfile::tempdir().unwrap();
        let debs = work.path().join("debs");
        fs::create_dir(&debs).unwrap();
        let err = extract_all(&debs, &work.path().join("tree")).unwrap_err();
        assert!(matches!(err, DebError::NoDeb { .. }), "{err}");
        for name in ["one", "two"] {
            let root = work.path().join(name);
            fs::create_dir_all(root.join("DEBIAN")).unwrap();
            fs::create_dir_all(root.join("usr/share")).unwrap();
            fs::write(
                root.join("DEBIAN/control"),
                format!("Package: {name}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n"),
            )
            .unwrap();
            fs::write(root.join("usr/share").join(name), name).unwrap();
            fsutil::run(
                Command::new("dpkg-deb")
                    .args(["--root-owner-group", "--build"])
                    .arg(&root)
                    .arg(debs.join(format!("{name}.deb"))),
            )
            .unwrap();
        }
        let tree = work.path().join("tree");
        let got = extract_all(&debs, &tree).unwrap();
        assert_eq!(got, [debs.join("one.deb"), debs.join("two.deb")]);
        assert_eq!(
            fs::read_to_string(tree.join("usr/share/one")).unwrap(),
            "one"
        );
        assert_eq!(
            fs::read_to_string(tree.join("usr/share/two")).unwrap(),
            "two"
        );
    }
}
