//! Filesystem helpers of the snapshotters: disk usage of a tree, and a faithful tree copy for
//! the native snapshotter.
//!
//! Written by hand because no maintained crate copies a tree with everything a container
//! layer carries (owners, modes including setuid/sticky, xattrs, hardlink groups, device
//! nodes, FIFOs, sockets, symlinks, mtimes) without following symlinks; `fs_extra` and
//! `copy_dir` lose owners, xattrs and hardlinks.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{mknod, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};

use super::{Error, Result, Usage};

/// The space a tree uses: allocated blocks (`st_blocks × 512`) and inodes, each inode counted
/// once however many hardlinks it has, as containerd's `fs.DiskUsage` does. Symlinks are not
/// followed; the top directory itself is counted.
pub fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = fs::symlink_metadata(&p).map_err(Error::io("stat", &p))?;
        if seen.insert((md.dev(), md.ino())) {
            usage.inodes += 1;
            usage.size += md.blocks() as i64 * 512;
        }
        if md.is_dir() {
            for e in fs::read_dir(&p).map_err(Error::io("read directory", &p))? {
                let e = e.map_err(Error::io("read directory", &p))?;
                stack.push(e.path());
            }
        }
    }
    Ok(usage)
}

/// Copies the tree under `src` into the existing directory `dst`, preserving file types,
/// contents, modes (with setuid/setgid/sticky), owners, extended attributes, hardlink groups
/// (within `src`), symlinks (not followed), device nodes, FIFOs, sockets and mtimes. `dst`'s own
/// attributes are set from `src`'s. Needs root for owners, device nodes and `trusted.*` xattrs.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links: HashMap<(u64, u64), std::path::PathBuf> = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    let md = fs::symlink_metadata(src).map_err(Error::io("stat", src))?;
    copy_attrs(src, dst, &md)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<()> {
    for e in fs::read_dir(src).map_err(Error::io("read directory", src))? {
        let e = e.map_err(Error::io("read directory", src))?;
        let s = e.path();
        let d = dst.join(e.file_name());
        let md = fs::symlink_metadata(&s).map_err(Error::io("stat", &s))?;
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = links.get(&(md.dev(), md.ino())) {
                fs::hard_link(first, &d).map_err(Error::io("hardlink", &d))?;
                continue;
            }
            links.insert((md.dev(), md.ino()), d.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&d).map_err(Error::io("create directory", &d))?;
            copy_dir(&s, &d, links)?;
        } else if ft.is_file() {
            fs::copy(&s, &d).map_err(Error::io("copy file to", &d))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&s).map_err(Error::io("read symlink", &s))?;
            std::os::unix::fs::symlink(&target, &d).map_err(Error::io("create symlink", &d))?;
        } else {
            let kind = if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_fifo() {
                SFlag::S_IFIFO
            } else if ft.is_socket() {
                SFlag::S_IFSOCK
            } else {
                return Err(Error::Io {
                    op: "copy (unknown file type)",
                    path: s,
                    source: std::io::Error::from(std::io::ErrorKind::Unsupported),
                });
            };
            mknod(
                &d,
                kind,
                Mode::from_bits_truncate(md.mode() & 0o7777),
                md.rdev(),
            )
            .map_err(|e| Error::Io {
                op: "create special file",
                path: d.clone(),
                source: e.into(),
            })?;
        }
        copy_attrs(&s, &d, &md)?;
    }
    Ok(())
}

/// Owner, xattrs, mode, then times (in that order: chown clears setuid bits, and every change
/// touches ctime but only utimes sets mtime).
fn copy_attrs(src: &Path, dst: &Path, md: &fs::Metadata) -> Result<()> {
    let is_link = md.file_type().is_symlink();
    fchownat(
        None,
        dst,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::Io {
        op: "chown",
        path: dst.to_path_buf(),
        source: e.into(),
    })?;
    // xattr::list/get/set act on the link itself (l*xattr), never on what it points to.
    let names = match xattr::list(src) {
        Ok(n) => n.collect::<Vec<_>>(),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Vec::new(),
        Err(e) => return Err(Error::io("list xattrs of", src)(e)),
    };
    for name in names {
        if let Some(value) = xattr::get(src, &name).map_err(Error::io("read xattr of", src))? {
            xattr::set(dst, &name, &value).map_err(|e| Error::Io {
                op: "set xattr",
                path: dst.join(format!("[{}]", name.to_string_lossy())),
                source: e,
            })?;
        }
    }
    if !is_link {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(Error::io("chmod", dst))?;
    }
    let atime = filetime::FileTime::from_last_access_time(md);
    let mtime = filetime::FileTime::from_last_modification_time(md);
    filetime::set_symlink_file_times(dst, atime, mtime).map_err(Error::io("set times of", dst))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn copy_preserves_everything() {
        if !is_root() {
            eprintln!("SKIP copy_preserves_everything: needs root (owners, device nodes)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        fs::create_dir_all(src.join("dir/sub")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("dir/file"), b"hello").unwrap();
        fchownat(
            None,
            &src.join("dir/file"),
            Some(Uid::from_raw(12)),
            Some(Gid::from_raw(34)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        // chown clears setuid, so the mode comes after it (as in copy_attrs).
        fs::set_permissions(src.join("dir/file"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("dir/file"), src.join("dir/sub/link")).unwrap();
        symlink("../file", src.join("dir/sub/sym")).unwrap();
        symlink("/nonexistent", src.join("dangling")).unwrap();
        fchownat(
            None,
            &src.join("dangling"),
            Some(Uid::from_raw(5)),
            Some(Gid::from_raw(6)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        mknod(
            &src.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        fs::set_permissions(src.join("dir"), fs::Permissions::from_mode(0o1777)).unwrap();
        xattr::set(src.join("dir/file"), "user.k", b"v").unwrap();
        xattr::set(src.join("dir"), "trusted.t", b"w").unwrap();
        let old = filetime::FileTime::from_unix_time(1_000_000, 0);
        filetime::set_symlink_file_times(src.join("dir/sub/sym"), old, old).unwrap();
        filetime::set_file_times(src.join("dir"), old, old).unwrap();

        copy_tree(&src, &dst).unwrap();

        let md = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap();
        assert_eq!(fs::read(dst.join("dir/file")).unwrap(), b"hello");
        assert_eq!(md("dir/file").mode() & 0o7777, 0o4755);
        assert_eq!((md("dir/file").uid(), md("dir/file").gid()), (12, 34));
        assert_eq!(
            md("dir/file").ino(),
            md("dir/sub/link").ino(),
            "hardlink group kept"
        );
        assert_eq!(
            fs::read_link(dst.join("dir/sub/sym")).unwrap(),
            Path::new("../file")
        );
        assert_eq!(md("dir/sub/sym").mtime(), 1_000_000);
        assert_eq!(
            md("dir").mtime(),
            1_000_000,
            "directory mtime set after its contents"
        );
        assert_eq!(md("dir").mode() & 0o7777, 0o1777);
        assert_eq!((md("dangling").uid(), md("dangling").gid()), (5, 6));
        assert!(md("null").file_type().is_char_device());
        assert_eq!(md("null").rdev(), nix::sys::stat::makedev(1, 3));
        assert!(md("fifo").file_type().is_fifo());
        assert_eq!(md("fifo").mode() & 0o777, 0o640);
        assert_eq!(
            xattr::get(dst.join("dir/file"), "user.k").unwrap().unwrap(),
            b"v"
        );
        assert_eq!(
            xattr::get(dst.join("dir"), "trusted.t").unwrap().unwrap(),
            b"w"
        );
    }

    #[test]
    fn usage_counts_hardlinks_once() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("a"), vec![1u8; 10000]).unwrap();
        let one = disk_usage(t.path()).unwrap();
        fs::hard_link(t.path().join("a"), t.path().join("b")).unwrap();
        assert_eq!(disk_usage(t.path()).unwrap(), one);
        assert_eq!(one.inodes, 2);
        assert!(one.size >= 10000, "{one:?}");
    }
}
