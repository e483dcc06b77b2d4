//! Unit tests: each entry kind and each whiteout form, in both modes, plus compression and
//! digest checks. They run as root (chown, mknod, trusted.* xattrs) and skip visibly
//! otherwise.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: archive tests need root (chown, mknod, trusted.* xattrs)");
    false
}

/// Builds layer tars entry by entry, writing names raw so hostile names (`..`) survive.
struct Layer(tar::Builder<Vec<u8>>);

impl Layer {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn entry(
        &mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        if name.len() < 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            self.0.append(&h, data).unwrap();
        } else {
            self.0.append_data(&mut h, name, data).unwrap();
        }
        self
    }

    fn owned(&mut self, name: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_500_000_000);
        h.set_uid(uid);
        h.set_gid(gid);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name, EntryType::Regular, 0o644, "", data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.entry(name, EntryType::Directory, mode, "", b"")
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, EntryType::Symlink, 0o777, target, b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, EntryType::Link, 0o644, target, b"")
    }

    fn device(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o660);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, name, &b""[..]).unwrap();
        self
    }

    fn xattr_file(&mut self, name: &str, attrs: &[(&str, &[u8])]) -> &mut Self {
        let pax: Vec<(String, &[u8])> = attrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.0
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(name, b"x")
    }

    fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

fn apply(root: &Path, tar: &[u8], opts: &ApplyOptions) -> Result<ApplyStats, Error> {
    apply_tar(root, tar, "test", opts)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode()
}

#[test]
fn regular_files_dirs_modes_owners_and_times() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Layer::new()
        .dir("d", 0o1777)
        .owned("d/suid", 0o4755, 1000, 1001, b"hello")
        .owned("d/sgid", 0o2711, 1000, 1001, b"")
        .file("implicit/parent/f", b"x")
        .bytes();
    let stats = apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    assert_eq!(stats.entries, 4);
    assert_eq!(stats.bytes, 6);
    let suid = t.path().join("d/suid");
    assert_eq!(fs::read(&suid).unwrap(), b"hello");
    let m = fs::metadata(&suid).unwrap();
    // Set after chown, so the setuid bit survives.
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mtime(), 1_500_000_000);
    assert_eq!(mode(&t.path().join("d/sgid")) & 0o7777, 0o2711);
    let d = fs::metadata(t.path().join("d")).unwrap();
    assert_eq!(d.mode() & 0o7777, 0o1777);
    // Directory times are fixed up after the children were written.
    assert_eq!(d.mtime(), 1_600_000_000);
    assert_eq!(mode(&t.path().join("implicit/parent")) & 0o7777, 0o755);
}

#[test]
fn symlinks_are_stored_not_followed() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Layer::new()
        .symlink("abs", "/etc/passwd")
        .symlink("rel", "../../x")
        .bytes();
    apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    assert_eq!(
        fs::read_link(t.path().join("abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read_link(t.path().join("rel")).unwrap(),
        Path::new("../../x")
    );
    // A regular file entry replaces a symlink of the same name rather than writing through.
    let tar = Layer::new().file("abs", b"mine").bytes();
    apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    assert_eq!(fs::read(t.path().join("abs")).unwrap(), b"mine");
    assert!(fs::symlink_metadata(t.path().join("abs"))
        .unwrap()
        .is_file());
}

#[test]
fn hardlinks_within_a_layer_share_the_inode() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Layer::new()
        .file("a", b"data")
        .dir("sub", 0o755)
        .hardlink("sub/b", "a")
        .hardlink("c", "./sub/../a")
        .bytes();
    apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    let ino = |p: &str| fs::metadata(t.path().join(p)).unwrap().ino();
    assert_eq!(ino("a"), ino("sub/b"));
    assert_eq!(ino("a"), ino("c"));
    assert_eq!(fs::metadata(t.path().join("a")).unwrap().nlink(), 3);
}

#[test]
fn hardlink_to_a_lower_layer_works_in_place_and_is_refused_in_overlay() {
    if !is_root() {
        return;
    }
    let lower = tempfile::tempdir().unwrap();
    apply(
        lower.path(),
        &Layer::new().file("base", b"b").bytes(),
        &ApplyOptions::in_place(),
    )
    .unwrap();
    let link = Layer::new().hardlink("again", "base").bytes();
    // In place: the target directory holds the parent's tree, so the link is correct.
    apply(lower.path(), &link, &ApplyOptions::in_place()).unwrap();
    assert_eq!(fs::read(lower.path().join("again")).unwrap(), b"b");
    // Overlay: the upper cannot link to a lower file.
    let upper = tempfile::tempdir().unwrap();
    let err = apply(
        upper.path(),
        &link,
        &ApplyOptions::overlay(vec![lower.path().into()]),
    )
    .unwrap_err();
    let msg = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        msg.contains("\"again\"") && msg.contains("lower layer"),
        "{msg}"
    );
    // A target that exists nowhere.
    let err = apply(
        upper.path(),
        &Layer::new().hardlink("x", "nope").bytes(),
        &ApplyOptions::in_place(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Entry {
                source: EntryError::HardlinkTargetMissing { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn devices_and_fifos_follow_the_policy() {
    if !is_root() {
        return;
    }
    let tar = Layer::new()
        .device("null", EntryType::Char, 1, 3)
        .device("loop9", EntryType::Block, 7, 9)
        .device("fifo", EntryType::Fifo, 0, 0)
        .bytes();
    let t = tempfile::tempdir().unwrap();
    apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    let null = fs::symlink_metadata(t.path().join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    let blk = fs::symlink_metadata(t.path().join("loop9")).unwrap();
    assert!(blk.file_type().is_block_device());
    assert_eq!(blk.rdev(), nix::sys::stat::makedev(7, 9));
    assert!(fs::symlink_metadata(t.path().join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());

    let t = tempfile::tempdir().unwrap();
    let mut opts = ApplyOptions::in_place();
    opts.devices = DeviceNodes::Skip;
    let stats = apply(t.path(), &tar, &opts).unwrap();
    assert_eq!(stats.devices_skipped, 2);
    assert!(!t.path().join("null").exists());
    assert!(t.path().join("fifo").exists());

    opts.devices = DeviceNodes::Refuse;
    let err = apply(t.path(), &tar, &opts).unwrap_err();
    assert!(
        matches!(&err, Error::Entry { entry, source: EntryError::DeviceRefused, .. } if entry == "null"),
        "{err:?}"
    );
}

#[test]
fn user_xattrs_are_applied_trusted_ones_ignored() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let tar = Layer::new()
        .xattr_file(
            "f",
            &[
                ("user.color", b"blue"),
                ("trusted.berth", b"t"),
                ("trusted.overlay.opaque", b"y"),
            ],
        )
        .bytes();
    let stats = apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    let f = t.path().join("f");
    assert_eq!(
        xattr::get(&f, "user.color").unwrap().as_deref(),
        Some(&b"blue"[..])
    );
    // trusted.* is the administrator's namespace: never taken from a layer.
    assert_eq!(xattr::get(&f, "trusted.berth").unwrap(), None);
    assert_eq!(xattr::get(&f, "trusted.overlay.opaque").unwrap(), None);
    assert_eq!(stats.xattrs_skipped, 2);
}

#[test]
fn long_and_non_ascii_names() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let long = format!("{}/{}", "d".repeat(150), "f".repeat(200));
    let tar = Layer::new()
        .file(&long, b"l")
        .file("café/日本語 ✓", b"u")
        .bytes();
    apply(t.path(), &tar, &ApplyOptions::in_place()).unwrap();
    assert_eq!(fs::read(t.path().join(&long)).unwrap(), b"l");
    assert_eq!(fs::read(t.path().join("café/日本語 ✓")).unwrap(), b"u");
}

#[test]
fn whiteouts_in_place_delete() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let base = Layer::new()
        .file("gone", b"1")
        .dir("gonedir", 0o755)
        .file("gonedir/x", b"2")
        .dir("opq", 0o755)
        .file("opq/old", b"3")
        .dir("opq/olddir", 0o755)
        .file("opq/olddir/y", b"4")
        .file("keep", b"5")
        .bytes();
    apply(t.path(), &base, &ApplyOptions::in_place()).unwrap();
    let top = Layer::new()
        .file(".wh.gone", b"")
        .file("gonedir/../.wh.gonedir", b"")
        .dir("opq", 0o755)
        .file("opq/new", b"6")
        // The marker may come after entries of the same layer: those stay.
        .file("opq/.wh..wh..opq", b"")
        .file(".wh..wh.plnk", b"")
        .bytes();
    let stats = apply(t.path(), &top, &ApplyOptions::in_place()).unwrap();
    assert_eq!(stats.whiteouts, 3);
    assert!(!t.path().join("gone").exists());
    assert!(!t.path().join("gonedir").exists());
    assert!(!t.path().join(".wh..wh.plnk").exists());
    let mut left: Vec<_> = fs::read_dir(t.path().join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, vec!["new"]);
    assert!(t.path().join("keep").exists());
}

#[test]
fn whiteouts_in_overlay_mode_become_overlay_markers() {
    if !is_root() {
        return;
    }
    let lower = tempfile::tempdir().unwrap();
    apply(
        lower.path(),
        &Layer::new()
            .dir("opq", 0o750)
            .file("opq/old", b"")
            .file("gone", b"")
            .bytes(),
        &ApplyOptions::in_place(),
    )
    .unwrap();
    nix::unistd::chown(&lower.path().join("opq"), Some(7.into()), Some(8.into())).unwrap();
    let upper = tempfile::tempdir().unwrap();
    let top = Layer::new()
        .file(".wh.gone", b"")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/new", b"n")
        .bytes();
    apply(
        upper.path(),
        &top,
        &ApplyOptions::overlay(vec![lower.path().into()]),
    )
    .unwrap();
    let wh = fs::symlink_metadata(upper.path().join("gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    let opq = upper.path().join("opq");
    assert_eq!(
        xattr::get(&opq, "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    // The implicitly created directory has the lower's owner and mode.
    let m = fs::metadata(&opq).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (7, 8, 0o750));
    assert!(!opq.join("old").exists());
    // Invalid whiteouts are refused, naming the entry.
    for bad in [".wh.", "d/.wh..", "d/.wh..."] {
        let err = apply(
            upper.path(),
            &Layer::new().file(bad, b"").bytes(),
            &ApplyOptions::in_place(),
        )
        .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Entry {
                    source: EntryError::InvalidWhiteout { .. },
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn file_and_directory_replace_each_other() {
    if !is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    apply(
        t.path(),
        &Layer::new()
            .dir("a", 0o755)
            .file("a/x", b"")
            .file("b", b"")
            .bytes(),
        &ApplyOptions::in_place(),
    )
    .unwrap();
    apply(
        t.path(),
        &Layer::new()
            .file("a", b"now a file")
            .dir("b", 0o700)
            .file("b/y", b"")
            .bytes(),
        &ApplyOptions::in_place(),
    )
    .unwrap();
    assert_eq!(fs::read(t.path().join("a")).unwrap(), b"now a file");
    assert!(t.path().join("b/y").is_file());
    assert_eq!(
        fs::metadata(t.path().join("b"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

fn layer_ref(blob: &[u8], media_type: &str, diff_id: Option<Digest>) -> LayerRef {
    LayerRef {
        digest: Digest::of(blob),
        size: blob.len() as u64,
        media_type: media_type.to_owned(),
        diff_id,
    }
}

#[test]
fn compressed_layers_are_verified_while_streaming() {
    if !is_root() {
        return;
    }
    let tar = Layer::new().file("f", &vec![7u8; 100_000]).bytes();
    let diff = Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (blob, mt) in [
        (&tar, media::OCI_LAYER),
        (&gz, media::OCI_LAYER_GZIP),
        (&zst, media::OCI_LAYER_ZSTD),
        (&gz, media::DOCKER_LAYER_GZIP),
        // Declared uncompressed, actually gzip: the magic wins.
        (&gz, media::DOCKER_LAYER),
    ] {
        let t = tempfile::tempdir().unwrap();
        let stats = apply_layer(
            t.path(),
            &blob[..],
            &layer_ref(blob, mt, Some(diff)),
            &ApplyOptions::in_place(),
        )
        .unwrap();
        assert_eq!(stats.diff_id, Some(diff), "{mt}");
        assert_eq!(stats.uncompressed_bytes, tar.len() as u64);
        assert_eq!(fs::read(t.path().join("f")).unwrap().len(), 100_000);
    }
    // A stream handing over one byte per read (a pipe, a socket) is detected all the same.
    struct OneByte<'a>(&'a [u8]);
    impl std::io::Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            if buf.is_empty() {
                return Ok(0);
            }
            buf[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }
    let t = tempfile::tempdir().unwrap();
    let stats = apply_layer(
        t.path(),
        OneByte(&zst),
        &layer_ref(&zst, media::OCI_LAYER_ZSTD, Some(diff)),
        &ApplyOptions::in_place(),
    )
    .unwrap();
    assert_eq!(stats.diff_id, Some(diff));
    // Truncated streams fail naming the layer.
    for (blob, mt) in [(&gz, media::OCI_LAYER_GZIP), (&zst, media::OCI_LAYER_ZSTD)] {
        let cut = &blob[..blob.len() / 2];
        let t = tempfile::tempdir().unwrap();
        let r = layer_ref(cut, mt, Some(diff));
        let err = apply_layer(t.path(), cut, &r, &ApplyOptions::in_place()).unwrap_err();
        assert!(matches!(err, Error::Read { .. }), "{mt}: {err:?}");
        assert!(err.to_string().contains(&r.digest.to_string()), "{err}");
    }
    // Wrong digest, wrong size, wrong diff ID.
    let t = tempfile::tempdir().unwrap();
    let mut wrong = layer_ref(&gz, media::OCI_LAYER_GZIP, Some(diff));
    wrong.digest = Digest::of(b"other");
    let err = apply_layer(t.path(), &gz[..], &wrong, &ApplyOptions::in_place()).unwrap_err();
    assert!(
        matches!(err, Error::DigestMismatch { what: "digest", .. }),
        "{err:?}"
    );
    let mut wrong = layer_ref(&gz, media::OCI_LAYER_GZIP, Some(Digest::of(b"x")));
    let err = apply_layer(t.path(), &gz[..], &wrong, &ApplyOptions::in_place()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DigestMismatch {
                what: "diff_id",
                ..
            }
        ),
        "{err:?}"
    );
    wrong.size += 1;
    let err = apply_layer(t.path(), &gz[..], &wrong, &ApplyOptions::in_place()).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err:?}");
    // Declared gzip, actually zstd.
    let err = apply_layer(
        t.path(),
        &zst[..],
        &layer_ref(&zst, media::OCI_LAYER_GZIP, None),
        &ApplyOptions::in_place(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::CompressionMismatch { .. }), "{err:?}");
    let err = apply_layer(
        t.path(),
        &tar[..],
        &layer_ref(&tar, "application/json", None),
        &ApplyOptions::in_place(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err:?}");
}
