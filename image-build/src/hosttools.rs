//! Dynamically linked programs from the build host's Debian packages, with the shared
//! libraries they load, for the root image (`[root] host_tools`).
//!
//! berth itself is one static binary, but a few jobs belong to well-tested C tools that we do
//! not rewrite: `mke2fs` and `e2fsck` for the state disk, and `zpool`/`zfs` in ZFS images.
//! They are taken from the host's installed Debian packages — the image records each
//! package's name and version in `manifest.json` — and placed at their own paths under
//! `/usr`. Their libraries are found with the dynamic loader's own `--list` mode (what
//! `ldd(1)` runs), so the result is exactly what the loader would map; each library is stored
//! under its soname in `/usr/lib/<multiarch>/`, and the loader at `/usr/lib64/`, reachable as
//! `/lib64/ld-linux-x86-64.so.2` (the interpreter path in every x86-64 binary).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::tree::{Tree, TreeError};

/// The x86-64 dynamic loader, as named in binaries' `PT_INTERP`.
pub const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// A host tool could not be added.
#[derive(Debug, thiserror::Error)]
pub enum HostToolError {
    /// The program is not there: its package is not installed on the build host.
    #[error("host tool {} not found on this machine (install its Debian package; scripts/install-deps.sh lists them)", .0.display())]
    Missing(PathBuf),
    /// Running the loader's `--list` failed.
    #[error("cannot list the libraries of {}: {message}", path.display())]
    List {
        /// The program.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A library named by the loader cannot be resolved.
    #[error("library {name} needed by {} cannot be found (the loader says: {line})", path.display())]
    Library {
        /// The program.
        path: PathBuf,
        /// The library's soname.
        name: String,
        /// The loader's line.
        line: String,
    },
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Adding to the tree failed.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// One library the loader maps for a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needed {
    /// The soname (`libext2fs.so.2`).
    pub soname: String,
    /// Where the loader found it on this host.
    pub path: PathBuf,
}

/// Parses the output of `ld.so --list PROGRAM` (ldd's format): `soname => path (addr)` lines,
/// the vDSO (no file) and the loader's own line (`/lib64/ld-linux-x86-64.so.2 (addr)`).
pub fn parse_list(program: &Path, text: &str) -> Result<Vec<Needed>, HostToolError> {
    let mut needed = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some((soname, rest)) = line.split_once(" => ") {
            let path = rest.split(" (").next().unwrap_or("").trim();
            if path.is_empty() || path == "not found" {
                return Err(HostToolError::Library {
                    path: program.to_path_buf(),
                    name: soname.trim().to_string(),
                    line: line.to_string(),
                });
            }
            needed.push(Needed {
                soname: soname.trim().to_string(),
                path: PathBuf::from(path),
            });
        }
        // Lines without "=>" are the vDSO and the loader itself: nothing to copy for the
        // first, and the loader is always added.
    }
    Ok(needed)
}

/// A program (with its libraries) as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolInfo {
    /// Path in the image (same as on the host, under `/usr`).
    pub path: String,
    /// Debian package and version it came from (`e2fsprogs 1.47.0-2`), when dpkg knows.
    pub package: Option<String>,
    /// Sonames of its libraries.
    pub libraries: Vec<String>,
}

/// Adds `tools` (absolute host paths such as `/usr/sbin/mke2fs`) with their libraries and
/// the loader to `tree`. Returns what the manifest records.
pub fn add_to_tree(tools: &[String], tree: &mut Tree) -> Result<Vec<ToolInfo>, HostToolError> {
    let mut infos = Vec::new();
    if tools.is_empty() {
        return Ok(infos);
    }
    let mut libraries: BTreeMap<String, PathBuf> = BTreeMap::new();
    for tool in tools {
        let host = usr_path(Path::new(tool));
        if !host.is_file() {
            return Err(HostToolError::Missing(host));
        }
        let output = Command::new(LOADER)
            .arg("--list")
            .arg(&host)
            .output()
            .map_err(|err| HostToolError::List {
                path: host.clone(),
                message: format!("cannot run {LOADER}: {err}"),
            })?;
        if !output.status.success() {
            return Err(HostToolError::List {
                path: host.clone(),
                message: format!(
                    "{LOADER} --list: {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        let needed = parse_list(&host, &String::from_utf8_lossy(&output.stdout))?;
        let relative = host.strip_prefix("/").unwrap_or(&host).to_path_buf();
        tree.file(&relative, 0o755, host.clone())?;
        infos.push(ToolInfo {
            path: host.display().to_string(),
            package: package_of(&host),
            libraries: needed.iter().map(|n| n.soname.clone()).collect(),
        });
        for lib in needed {
            libraries.entry(lib.soname).or_insert(lib.path);
        }
    }
    let multiarch = Path::new("usr/lib/x86_64-linux-gnu");
    for (soname, path) in &libraries {
        let real = std::fs::canonicalize(path).map_err(|source| HostToolError::Read {
            path: path.clone(),
            source,
        })?;
        tree.file(multiarch.join(soname), 0o644, real)?;
    }
    let loader = std::fs::canonicalize(LOADER).map_err(|source| HostToolError::Read {
        path: LOADER.into(),
        source,
    })?;
    tree.dir("usr/lib64", 0o755)?;
    tree.file("usr/lib64/ld-linux-x86-64.so.2", 0o755, loader)?;
    tree.symlink("lib64", "usr/lib64")?;
    Ok(infos)
}

/// `/sbin/x` → `/usr/sbin/x` (Debian 12 has merged `/usr`; the image only has `/usr`).
fn usr_path(path: &Path) -> PathBuf {
    for top in ["/bin", "/sbin", "/lib"] {
        if let Ok(rest) = path.strip_prefix(top) {
            return Path::new("/usr")
                .join(top.trim_start_matches('/'))
                .join(rest);
        }
    }
    path.to_path_buf()
}

/// `package version` owning `path` per dpkg, trying the `/usr`-less spelling too (dpkg's
/// database keeps the pre-merge paths).
fn package_of(path: &Path) -> Option<String> {
    let candidates = [
        path.to_path_buf(),
        path.strip_prefix("/usr")
            .map(|p| Path::new("/").join(p))
            .unwrap_or_default(),
    ];
    for candidate in candidates.iter().filter(|p| !p.as_os_str().is_empty()) {
        let out = Command::new("dpkg-query")
            .arg("-S")
            .arg(candidate)
            .output()
            .ok()?;
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let package = text.lines().next()?.split(':').next()?.trim().to_string();
        let version = Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", &package])
            .output()
            .ok()?;
        let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
        return Some(format!("{package} {version}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ldd_style_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
\tlibext2fs.so.2 => /lib/x86_64-linux-gnu/libext2fs.so.2 (0x00007f07)\n\
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f07)\n\
\t/lib64/ld-linux-x86-64.so.2 (0x00007f07)\n";
        let needed = parse_list(Path::new("/usr/sbin/mke2fs"), text).unwrap();
        assert_eq!(
            needed,
            vec![
                Needed {
                    soname: "libext2fs.so.2".into(),
                    path: "/lib/x86_64-linux-gnu/libext2fs.so.2".into()
                },
                Needed {
                    soname: "libc.so.6".into(),
                    path: "/lib/x86_64-linux-gnu/libc.so.6".into()
                },
            ]
        );
    }

    #[test]
    fn missing_library_names_it() {
        let text = "\tlibzfs.so.4 => not found\n";
        let err = parse_list(Path::new("/usr/sbin/zfs"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("libzfs.so.4") && err.contains("/usr/sbin/zfs"),
            "{err}"
        );
    }

    #[test]
    fn merged_usr_paths() {
        assert_eq!(
            usr_path(Path::new("/sbin/e2fsck")),
            PathBuf::from("/usr/sbin/e2fsck")
        );
        assert_eq!(
            usr_path(Path::new("/usr/sbin/mke2fs")),
            PathBuf::from("/usr/sbin/mke2fs")
        );
    }

    #[test]
    fn adds_real_tools_with_libraries_and_loader() {
        if !Path::new("/usr/sbin/mke2fs").is_file() || !Path::new(LOADER).exists() {
            eprintln!("SKIP adds_real_tools_with_libraries_and_loader: no /usr/sbin/mke2fs or {LOADER} on this host");
            return;
        }
        let mut tree = Tree::new();
        tree.dir("usr", 0o755).unwrap();
        tree.dir("usr/sbin", 0o755).unwrap();
        tree.dir("usr/lib", 0o755).unwrap();
        tree.dir("usr/lib/x86_64-linux-gnu", 0o755).unwrap();
        let infos = add_to_tree(&["/usr/sbin/mke2fs".into()], &mut tree).unwrap();
        assert_eq!(infos.len(), 1);
        assert!(
            infos[0].libraries.iter().any(|l| l == "libext2fs.so.2"),
            "{infos:?}"
        );
        assert!(
            infos[0]
                .package
                .as_deref()
                .is_some_and(|p| p.starts_with("e2fsprogs ")),
            "{infos:?}"
        );
        assert!(tree.contains("usr/sbin/mke2fs"));
        assert!(tree.contains("usr/lib/x86_64-linux-gnu/libext2fs.so.2"));
        assert!(tree.contains("usr/lib64/ld-linux-x86-64.so.2"));
        assert!(tree.contains("lib64"));
    }
}
