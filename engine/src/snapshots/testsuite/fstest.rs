//! Filesystem changes to apply to a mounted snapshot and to a plain "flat" directory, and a
//! comparison of two trees (containerd's `continuity/fs/fstest`, reduced to what the suite
//! uses). Modes are set explicitly after creation, so the process umask does not matter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::unistd::{fchownat, Gid, Uid};

/// One change to a tree. Paths are relative to the tree's root (a leading `/` is ignored).
#[derive(Debug, Clone)]
pub enum Op {
    /// Create or overwrite a regular file, then chmod it.
    File(String, Vec<u8>, u32),
    /// Create a directory, then chmod it.
    Dir(String, u32),
    /// Remove a file or a whole directory; missing paths are fine.
    RemoveAll(String),
    /// Change owner (without following symlinks).
    Chown(String, u32, u32),
    /// rename(2) `from` to `to`.
    Rename(String, String),
    /// Hardlink: `Link(existing, new)`.
    Link(String, String),
    /// Symlink: `Symlink(target, path)`.
    Symlink(String, String),
    /// A FIFO with a mode.
    Fifo(String, u32),
    /// Set an extended attribute.
    Xattr(String, String, Vec<u8>),
}

/// Shorthands for building change lists.
pub fn file(p: &str, content: &[u8], mode: u32) -> Op {
    Op::File(p.into(), content.to_vec(), mode)
}
/// See [`Op::Dir`].
pub fn dir(p: &str, mode: u32) -> Op {
    Op::Dir(p.into(), mode)
}
/// See [`Op::RemoveAll`].
pub fn remove_all(p: &str) -> Op {
    Op::RemoveAll(p.into())
}
/// See [`Op::Chown`].
pub fn chown(p: &str, uid: u32, gid: u32) -> Op {
    Op::Chown(p.into(), uid, gid)
}
/// See [`Op::Rename`].
pub fn rename(from: &str, to: &str) -> Op {
    Op::Rename(from.into(), to.into())
}
/// See [`Op::Link`].
pub fn link(existing: &str, new: &str) -> Op {
    Op::Link(existing.into(), new.into())
}

fn at(root: &Path, p: &str) -> PathBuf {
    root.join(p.trim_start_matches('/'))
}

fn err(op: &Op, e: impl std::fmt::Display) -> String {
    format!("applying {op:?}: {e}")
}

/// Applies `ops` in order under `root`.
pub fn apply(root: &Path, ops: &[Op]) -> Result<(), String> {
    for op in ops {
        match op {
            Op::File(p, content, mode) => {
                let p = at(root, p);
                fs::write(&p, content).map_err(|e| err(op, e))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                    .map_err(|e| err(op, e))?;
            }
            Op::Dir(p, mode) => {
                let p = at(root, p);
                fs::create_dir(&p).map_err(|e| err(op, e))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                    .map_err(|e| err(op, e))?;
            }
            Op::RemoveAll(p) => {
                let p = at(root, p);
                let r = match fs::symlink_metadata(&p) {
                    Ok(md) if md.is_dir() => fs::remove_dir_all(&p),
                    Ok(_) => fs::remove_file(&p),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                r.map_err(|e| err(op, e))?;
            }
            Op::Chown(p, uid, gid) => {
                fchownat(
                    None,
                    &at(root, p),
                    Some(Uid::from_raw(*uid)),
                    Some(Gid::from_raw(*gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err(op, e))?;
            }
            Op::Rename(from, to) => {
                fs::rename(at(root, from), at(root, to)).map_err(|e| err(op, e))?;
            }
            Op::Link(existing, new) => {
                fs::hard_link(at(root, existing), at(root, new)).map_err(|e| err(op, e))?;
            }
            Op::Symlink(target, p) => {
                std::os::unix::fs::symlink(target, at(root, p)).map_err(|e| err(op, e))?;
            }
            Op::Fifo(p, mode) => {
                let p = at(root, p);
                nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(*mode))
                    .map_err(|e| err(op, e))?;
                fs::set_permissions(&p, fs::Permissions::from_mode(*mode))
                    .map_err(|e| err(op, e))?;
            }
            Op::Xattr(p, name, value) => {
                xattr::set(at(root, p), name, value).map_err(|e| err(op, e))?;
            }
        }
    }
    Ok(())
}

/// What the comparison looks at for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
    rdev: u64,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Xattrs that differ between a mounted snapshot and a flat directory for reasons that are not
/// the snapshotter's content: SELinux/IMA labels, overlayfs' private attributes.
fn compared_xattr(name: &str) -> bool {
    !(name.starts_with("security.")
        || name.starts_with("trusted.overlay.")
        || name.starts_with("user.overlay."))
}

type Tree = (BTreeMap<PathBuf, Entry>, BTreeSet<Vec<PathBuf>>);

fn collect(root: &Path) -> Result<Tree, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dirp = root.join(&rel);
        let rd = fs::read_dir(&dirp).map_err(|e| format!("read {}: {e}", dirp.display()))?;
        for e in rd {
            let e = e.map_err(|e| format!("read {}: {e}", dirp.display()))?;
            let r = rel.join(e.file_name());
            let p = e.path();
            let md = fs::symlink_metadata(&p).map_err(|e| format!("stat {}: {e}", p.display()))?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_fifo() {
                "fifo"
            } else if ft.is_char_device() {
                "chardev"
            } else if ft.is_block_device() {
                "blockdev"
            } else {
                "socket"
            };
            let content = if ft.is_file() {
                Some(fs::read(&p).map_err(|e| format!("read {}: {e}", p.display()))?)
            } else {
                None
            };
            let link = if ft.is_symlink() {
                Some(fs::read_link(&p).map_err(|e| format!("readlink {}: {e}", p.display()))?)
            } else {
                None
            };
            let mut xattrs = BTreeMap::new();
            if let Ok(names) = xattr::list(&p) {
                for n in names {
                    let name = n.to_string_lossy().into_owned();
                    if compared_xattr(&name) {
                        if let Ok(Some(v)) = xattr::get(&p, &n) {
                            xattrs.insert(name, v);
                        }
                    }
                }
            }
            if !ft.is_dir() && md.nlink() > 1 {
                inodes.entry(md.ino()).or_default().push(r.clone());
            }
            out.insert(
                r.clone(),
                Entry {
                    kind,
                    mode: if ft.is_symlink() {
                        0
                    } else {
                        md.mode() & 0o7777
                    },
                    uid: md.uid(),
                    gid: md.gid(),
                    content,
                    link,
                    rdev: md.rdev(),
                    xattrs,
                },
            );
            if ft.is_dir() {
                stack.push(r);
            }
        }
    }
    let groups = inodes
        .into_values()
        .filter(|v| v.len() > 1)
        .map(|mut v| {
            v.sort();
            v
        })
        .collect();
    Ok((out, groups))
}

/// Compares the contents of two trees (not their roots' own attributes): paths, types, modes,
/// owners, file contents, link targets, device numbers, xattrs and hardlink groups. Returns the
/// differences (at most a dozen) as one message.
pub fn check_equal(expected: &Path, actual: &Path) -> Result<(), String> {
    let (a, ag) = collect(expected)?;
    let (b, bg) = collect(actual)?;
    let mut diffs = Vec::new();
    for (p, e) in &a {
        match b.get(p) {
            None => diffs.push(format!("{}: missing", p.display())),
            Some(x) if x != e => diffs.push(format!(
                "{}: expected {}, found {}",
                p.display(),
                describe(e),
                describe(x)
            )),
            _ => {}
        }
    }
    for p in b.keys() {
        if !a.contains_key(p) {
            diffs.push(format!("{}: unexpected", p.display()));
        }
    }
    if ag != bg {
        diffs.push(format!("hardlink groups: expected {ag:?}, found {bg:?}"));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        diffs.truncate(12);
        Err(format!(
            "{} differs from {}: {}",
            actual.display(),
            expected.display(),
            diffs.join("; ")
        ))
    }
}

fn describe(e: &Entry) -> String {
    let mut s = format!("{} {:o} {}:{}", e.kind, e.mode, e.uid, e.gid);
    if let Some(c) = &e.content {
        s.push_str(&format!(
            " {:?}",
            String::from_utf8_lossy(&c[..c.len().min(40)])
        ));
    }
    if let Some(l) = &e.link {
        s.push_str(&format!(" -> {}", l.display()));
    }
    if !e.xattrs.is_empty() {
        s.push_str(&format!(
            " xattrs {:?}",
            e.xattrs.keys().collect::<Vec<_>>()
        ));
    }
    s
}
