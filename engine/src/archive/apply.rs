//! Applying the entries of one uncompressed tar stream (see the module docs of
//! [`super`] and `docs/images.md` for the rules).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::EntryType;

use super::error::{EntryError, Error};
use super::resolve::{self, clean, kind, lstat_at, proc_path, resolve_dir, ResolvedDir};
use super::{ApplyOptions, ApplyStats, DeviceNodes, Mode as ApplyMode};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// `trusted.*` attributes are never taken from a layer: they are the administrator's
/// namespace (overlayfs keeps its opaque markers and redirects there), so a layer setting
/// them could change how the snapshot is mounted. containerd 1.6 refuses them the same way
/// ("admin attributes from archive not supported") and logs them.
const TRUSTED_XATTR_PREFIX: &str = "trusted.";
const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// How one entry failed: reading the stream (the layer is truncated or corrupt) or applying
/// the entry.
enum Fail {
    Read(io::Error),
    Entry(EntryError),
}

impl From<EntryError> for Fail {
    fn from(e: EntryError) -> Self {
        Self::Entry(e)
    }
}

fn sys(op: &'static str) -> impl FnOnce(Errno) -> EntryError {
    move |source| EntryError::Sys { op, source }
}

/// The header fields of one entry, PAX overrides applied.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    atime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Applier<'a> {
    root: OwnedFd,
    lowers: Vec<OwnedFd>,
    opts: &'a ApplyOptions,
    stats: ApplyStats,
    /// Real paths (from the root) this layer wrote, for opaque directories in in-place mode.
    unpacked: HashSet<PathBuf>,
    /// Directory times, set at the end: writing children changes a directory's mtime.
    dir_times: Vec<(PathBuf, TimeSpec, TimeSpec)>,
    /// The last parent resolved, by its cleaned components: tar entries come grouped by
    /// directory, so most entries reuse it instead of walking from the root again. Dropped
    /// whenever anything is removed from the tree (the only way a resolved directory can
    /// stop being what its name resolves to).
    last_parent: Option<(Vec<OsString>, ResolvedDir)>,
    /// Copy buffer for file data, reused across entries.
    buf: Vec<u8>,
}

pub(super) fn apply_tar(
    target: &Path,
    tar: impl Read,
    layer: &str,
    compression: &'static str,
    opts: &ApplyOptions,
) -> Result<ApplyStats, Error> {
    let open = |path: &Path| {
        File::open(path)
            .map(OwnedFd::from)
            .map_err(|source| Error::Target {
                path: path.to_owned(),
                source,
            })
    };
    let lowers = match &opts.mode {
        ApplyMode::InPlace => Vec::new(),
        ApplyMode::Overlay { lowers } => {
            lowers.iter().map(|l| open(l)).collect::<Result<_, _>>()?
        }
    };
    let mut applier = Applier {
        root: open(target)?,
        lowers,
        opts,
        stats: ApplyStats::default(),
        unpacked: HashSet::new(),
        dir_times: Vec::new(),
        last_parent: None,
        buf: vec![0u8; 128 * 1024],
    };
    let read_err = |source| Error::Read {
        layer: layer.to_owned(),
        compression,
        source,
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        applier.stats.entries += 1;
        crate::failpoint::hit("unpack.layer.entry");
        let name = entry.path_bytes().into_owned();
        match applier.entry(&mut entry, &name) {
            Ok(()) => {}
            Err(Fail::Read(source)) => return Err(read_err(source)),
            Err(Fail::Entry(source)) => {
                return Err(Error::Entry {
                    layer: layer.to_owned(),
                    entry: String::from_utf8_lossy(&name).into_owned(),
                    source,
                })
            }
        }
    }
    applier
        .finish_dir_times()
        .map_err(|(rel, source)| Error::Entry {
            layer: layer.to_owned(),
            entry: rel.display().to_string(),
            source,
        })?;
    Ok(applier.stats)
}

impl Applier<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, name: &[u8]) -> Result<(), Fail> {
        let comps = clean(name);
        // The root itself: containerd ignores it too (its metadata belongs to the snapshot).
        let Some((base, parent)) = comps.split_last() else {
            return Ok(());
        };
        let etype = entry.header().entry_type();
        if matches!(etype, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let meta = read_meta(entry).map_err(EntryError::Header)?;
        let dir = self.parent(parent)?;
        let base_bytes = base.as_bytes();
        if base_bytes.starts_with(WHITEOUT_PREFIX) {
            return Ok(self.whiteout(&dir, base_bytes, &meta)?);
        }
        let rel = dir.rel.join(base);
        let dfd = dir.fd.as_fd();
        if let Some(st) = lstat_at(dfd, base).map_err(sys("lstat"))? {
            if !(kind(&st) == SFlag::S_IFDIR && etype.is_dir()) {
                self.last_parent = None;
                resolve::remove_all_at(dfd, base).map_err(sys("remove existing"))?;
            }
        }
        let perm = Mode::from_bits_truncate(meta.mode & 0o7777);
        match etype {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = nix::fcntl::openat(
                    Some(dfd.as_raw_fd()),
                    base.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(sys("create file"))?;
                let mut file = File::from(resolve::own(fd));
                self.stats.bytes += copy_data(entry, &mut file, &mut self.buf)?;
            }
            EntryType::Directory => {
                if lstat_at(dfd, base).map_err(sys("lstat"))?.is_none() {
                    nix::sys::stat::mkdirat(
                        Some(dfd.as_raw_fd()),
                        base.as_os_str(),
                        Mode::from_bits_truncate(0o700),
                    )
                    .map_err(sys("mkdir"))?;
                }
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                nix::unistd::symlinkat(
                    OsStr::from_bytes(&target),
                    Some(dfd.as_raw_fd()),
                    base.as_os_str(),
                )
                .map_err(sys("symlink"))?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                self.hardlink(&target, dfd, base)?;
            }
            EntryType::Char | EntryType::Block => {
                match self.opts.devices {
                    DeviceNodes::Create => {}
                    DeviceNodes::Skip => {
                        self.stats.devices_skipped += 1;
                        return Ok(());
                    }
                    DeviceNodes::Refuse => return Err(EntryError::DeviceRefused.into()),
                }
                let header = entry.header();
                let major = header.device_major().map_err(EntryError::Header)?;
                let minor = header.device_minor().map_err(EntryError::Header)?;
                let dev = nix::sys::stat::makedev(
                    u64::from(major.unwrap_or(0)),
                    u64::from(minor.unwrap_or(0)),
                );
                let sflag = if etype == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                nix::sys::stat::mknodat(Some(dfd.as_raw_fd()), base.as_os_str(), sflag, perm, dev)
                    .map_err(sys("mknod"))?;
            }
            EntryType::Fifo => {
                nix::sys::stat::mknodat(
                    Some(dfd.as_raw_fd()),
                    base.as_os_str(),
                    SFlag::S_IFIFO,
                    perm,
                    0,
                )
                .map_err(sys("mkfifo"))?;
            }
            other => return Err(EntryError::UnsupportedType(other.as_byte()).into()),
        }
        self.set_meta(dfd, base, &rel, etype, &meta)?;
        self.unpacked.insert(rel);
        Ok(())
    }

    /// Resolves (creating if needed) the entry's parent directory. In overlay mode,
    /// directories created implicitly take their metadata from the lowers.
    fn parent(&mut self, parent: &[OsString]) -> Result<ResolvedDir, EntryError> {
        if let Some((comps, dir)) = &self.last_parent {
            if comps.as_slice() == parent {
                let fd = dir.fd.try_clone().map_err(|e| EntryError::Sys {
                    op: "dup",
                    source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
                })?;
                return Ok(ResolvedDir {
                    fd,
                    rel: dir.rel.clone(),
                    created: Vec::new(),
                });
            }
        }
        let dir = resolve_dir(self.root.as_fd(), parent, true)?
            .expect("resolve_dir with create always resolves");
        if !self.lowers.is_empty() {
            for rel in &dir.created {
                self.copy_lower_dir_meta(rel)?;
            }
        }
        if let Ok(fd) = dir.fd.try_clone() {
            self.last_parent = Some((
                parent.to_vec(),
                ResolvedDir {
                    fd,
                    rel: dir.rel.clone(),
                    created: Vec::new(),
                },
            ));
        }
        Ok(dir)
    }

    /// Owner, extended attributes, mode (after chown: chown clears setuid/setgid) and times
    /// — containerd's order.
    fn set_meta(
        &mut self,
        dfd: BorrowedFd<'_>,
        base: &OsStr,
        rel: &Path,
        etype: EntryType,
        meta: &Meta,
    ) -> Result<(), EntryError> {
        nix::unistd::fchownat(
            Some(dfd.as_raw_fd()),
            base,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(sys("chown"))?;
        for (name, value) in &meta.xattrs {
            if name.starts_with(TRUSTED_XATTR_PREFIX) {
                tracing::debug!(xattr = %name, "unpack: trusted.* attribute from a layer ignored");
                self.stats.xattrs_skipped += 1;
                continue;
            }
            set_xattr(&proc_path(dfd, base), name, value)?;
        }
        if !matches!(etype, EntryType::Symlink | EntryType::Link) {
            nix::sys::stat::fchmodat(
                Some(dfd.as_raw_fd()),
                base,
                Mode::from_bits_truncate(meta.mode & 0o7777),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(sys("chmod"))?;
        }
        if etype.is_dir() {
            self.dir_times
                .push((rel.to_owned(), meta.atime, meta.mtime));
        } else {
            nix::sys::stat::utimensat(
                Some(dfd.as_raw_fd()),
                base,
                &meta.atime,
                &meta.mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(sys("set times"))?;
        }
        Ok(())
    }

    /// A hardlink: the target is resolved inside the root like any name (its final component
    /// not followed, so a link to a symlink links the symlink, as link(2) does).
    fn hardlink(
        &mut self,
        target: &[u8],
        dfd: BorrowedFd<'_>,
        base: &OsStr,
    ) -> Result<(), EntryError> {
        let shown = String::from_utf8_lossy(target).into_owned();
        let comps = clean(target);
        let missing = || {
            if self.in_lowers(&comps) {
                EntryError::HardlinkToLowerLayer {
                    target: shown.clone(),
                }
            } else {
                EntryError::HardlinkTargetMissing {
                    target: shown.clone(),
                }
            }
        };
        let Some((tbase, tparent)) = comps.split_last() else {
            return Err(missing());
        };
        let Some(tdir) = resolve_dir(self.root.as_fd(), tparent, false)? else {
            return Err(missing());
        };
        if lstat_at(tdir.fd.as_fd(), tbase)
            .map_err(sys("lstat"))?
            .is_none()
        {
            return Err(missing());
        }
        nix::unistd::linkat(
            Some(tdir.fd.as_raw_fd()),
            tbase.as_os_str(),
            Some(dfd.as_raw_fd()),
            base,
            AtFlags::empty(),
        )
        .map_err(sys("link"))
    }

    /// Whether `comps` exists in any lower (overlay mode only).
    fn in_lowers(&self, comps: &[OsString]) -> bool {
        let Some((base, parent)) = comps.split_last() else {
            return false;
        };
        self.lowers.iter().any(|lower| {
            matches!(resolve_dir(lower.as_fd(), parent, false), Ok(Some(d))
                if matches!(lstat_at(d.fd.as_fd(), base), Ok(Some(_))))
        })
    }

    /// `.wh.<name>` and `.wh..wh..opq` in the directory `dir`.
    fn whiteout(&mut self, dir: &ResolvedDir, base: &[u8], meta: &Meta) -> Result<(), EntryError> {
        let dfd = dir.fd.as_fd();
        let overlay = matches!(self.opts.mode, ApplyMode::Overlay { .. });
        // Whiteouts and opaque markers remove things: forget the cached parent.
        self.last_parent = None;
        if base == OPAQUE_MARKER {
            self.stats.whiteouts += 1;
            if overlay {
                let file = File::from(
                    resolve::open_listable(dfd, OsStr::new(".")).map_err(sys("open directory"))?,
                );
                xattr::FileExt::set_xattr(&file, OVERLAY_OPAQUE, b"y").map_err(|source| {
                    EntryError::Xattr {
                        name: OVERLAY_OPAQUE.to_owned(),
                        source,
                    }
                })?;
            } else {
                self.purge(dfd, &dir.rel)?;
            }
            return Ok(());
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            // Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): not content; containerd
            // skips them too.
            return Ok(());
        }
        let victim = &base[WHITEOUT_PREFIX.len()..];
        if victim.is_empty() || victim == b"." || victim == b".." {
            return Err(EntryError::InvalidWhiteout {
                name: String::from_utf8_lossy(base).into_owned(),
            });
        }
        let victim = OsStr::from_bytes(victim);
        self.stats.whiteouts += 1;
        resolve::remove_all_at(dfd, victim).map_err(sys("remove whited-out path"))?;
        if overlay {
            nix::sys::stat::mknodat(
                Some(dfd.as_raw_fd()),
                victim,
                SFlag::S_IFCHR,
                Mode::empty(),
                0,
            )
            .map_err(sys("mknod whiteout"))?;
            nix::unistd::fchownat(
                Some(dfd.as_raw_fd()),
                victim,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(sys("chown whiteout"))?;
        }
        Ok(())
    }

    /// In-place opaque directory: removes everything below `dir` this layer did not write.
    fn purge(&self, dir: BorrowedFd<'_>, rel: &Path) -> Result<(), EntryError> {
        for child in resolve::list_dir(dir).map_err(sys("list directory"))? {
            let child_rel = rel.join(&child);
            if !self.unpacked.contains(&child_rel) {
                resolve::remove_all_at(dir, &child)
                    .map_err(sys("remove under opaque directory"))?;
            } else if lstat_at(dir, &child)
                .map_err(sys("lstat"))?
                .is_some_and(|st| kind(&st) == SFlag::S_IFDIR)
            {
                let sub = resolve::open_dir(dir, &child).map_err(sys("open directory"))?;
                self.purge(sub.as_fd(), &child_rel)?;
            }
        }
        Ok(())
    }

    /// Gives a directory created implicitly in the upper the owner, mode, extended attributes
    /// and times it has in the topmost lower that has it (containerd's `copyDirInfo`), so
    /// the merged view does not change it. `trusted.overlay.*` is not copied: an opaque
    /// marker below must not make the upper directory opaque.
    fn copy_lower_dir_meta(&mut self, rel: &Path) -> Result<(), EntryError> {
        let comps: Vec<OsString> = rel.iter().map(OsStr::to_owned).collect();
        let Some((base, parent)) = comps.split_last() else {
            return Ok(());
        };
        for lower in &self.lowers {
            let Some(dir) = resolve_dir(lower.as_fd(), parent, false)? else {
                continue;
            };
            let Some(st) = lstat_at(dir.fd.as_fd(), base).map_err(sys("lstat lower"))? else {
                continue;
            };
            if kind(&st) != SFlag::S_IFDIR {
                return Ok(());
            }
            let src = proc_path(dir.fd.as_fd(), base);
            let attrs: Vec<(String, Vec<u8>)> = xattr::list(&src)
                .map(|names| {
                    names
                        .filter_map(|n| {
                            let n = n.to_string_lossy().into_owned();
                            if n.starts_with(OVERLAY_XATTR_PREFIX) {
                                return None;
                            }
                            let v = xattr::get(&src, &n).ok().flatten()?;
                            Some((n, v))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let meta = Meta {
                uid: st.st_uid,
                gid: st.st_gid,
                mode: st.st_mode,
                atime: TimeSpec::new(st.st_atime, st.st_atime_nsec),
                mtime: TimeSpec::new(st.st_mtime, st.st_mtime_nsec),
                xattrs: attrs,
            };
            let comps_parent: Vec<OsString> = parent.to_vec();
            let upper = resolve_dir(self.root.as_fd(), &comps_parent, false)?.ok_or_else(|| {
                EntryError::NotADirectory {
                    component: rel.display().to_string(),
                }
            })?;
            return self.set_meta(upper.fd.as_fd(), base, rel, EntryType::Directory, &meta);
        }
        Ok(())
    }

    fn finish_dir_times(&mut self) -> Result<(), (PathBuf, EntryError)> {
        for (rel, atime, mtime) in std::mem::take(&mut self.dir_times) {
            let comps: Vec<OsString> = rel.iter().map(OsStr::to_owned).collect();
            let Some((base, parent)) = comps.split_last() else {
                continue;
            };
            let dir = match resolve_dir(self.root.as_fd(), parent, false) {
                Ok(Some(d)) => d,
                // Removed or replaced later in the layer.
                Ok(None) | Err(EntryError::NotADirectory { .. }) => continue,
                Err(e) => return Err((rel, e)),
            };
            match nix::sys::stat::utimensat(
                Some(dir.fd.as_raw_fd()),
                base.as_os_str(),
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err((rel, sys("set directory times")(e))),
            }
        }
        Ok(())
    }
}

/// Copies the entry's data; read errors are the stream's (truncation), write errors the
/// target's.
fn copy_data(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> Result<u64, Fail> {
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Read(e)),
        };
        to.write_all(&buf[..n])
            .map_err(|e| Fail::Entry(EntryError::Data(e)))?;
        total += n as u64;
    }
}

/// Sets one extended attribute without following a symlink. "Not supported" (a filesystem
/// without user xattrs, say) is logged and skipped, as containerd does; anything else fails.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), EntryError> {
    match xattr::set(path, name, value) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
            tracing::warn!(xattr = name, path = %path.display(), "unpack: extended attribute not supported here, skipped");
            Ok(())
        }
        Err(source) => Err(EntryError::Xattr {
            name: name.to_owned(),
            source,
        }),
    }
}

/// Reads owner, mode, times and xattrs, with PAX records overriding the ustar fields
/// (Go's archive/tar writes large ids and sub-second times only there).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let header = entry.header();
    let mut uid = header.uid()?;
    let mut gid = header.gid()?;
    let mode = header.mode()?;
    let mut mtime = TimeSpec::new(header.mtime()? as libc::time_t, 0);
    let mut atime = None;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.push((name.to_owned(), value.to_vec()));
                continue;
            }
            let text = std::str::from_utf8(value).unwrap_or("");
            let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("PAX {key}={text:?}"));
            match key {
                "uid" => uid = text.parse().map_err(|_| bad())?,
                "gid" => gid = text.parse().map_err(|_| bad())?,
                "mtime" => mtime = parse_pax_time(text).ok_or_else(bad)?,
                "atime" => atime = Some(parse_pax_time(text).ok_or_else(bad)?),
                _ => {}
            }
        }
    }
    let too_big = |what| io::Error::new(io::ErrorKind::InvalidData, format!("{what} out of range"));
    Ok(Meta {
        uid: u32::try_from(uid).map_err(|_| too_big("uid"))?,
        gid: u32::try_from(gid).map_err(|_| too_big("gid"))?,
        mode,
        mtime,
        atime: atime.unwrap_or(mtime),
        xattrs,
    })
}

/// PAX times are decimal seconds with an optional fraction (`1700000000.123456789`).
fn parse_pax_time(text: &str) -> Option<TimeSpec> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    let digits: String = frac.chars().take(9).collect();
    if !digits.is_empty() {
        nanos = format!("{digits:0<9}").parse().ok()?;
    }
    if secs < 0 && nanos > 0 {
        return Some(TimeSpec::new(secs - 1, 1_000_000_000 - nanos));
    }
    Some(TimeSpec::new(secs, nanos))
}
