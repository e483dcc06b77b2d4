//! Differential oracle: the tree berth unpacks must be identical to the tree Debian's
//! containerd unpacks from the same archive.
//!
//! The test image is built with `umoci` from local files: two layers `umoci repack`
//! computes from a real directory tree (files, dirs, symlinks, hardlinks, xattrs user.* and
//! trusted.*, setuid/setgid/sticky bits, owners, long and non-ASCII names, char and block
//! devices, FIFOs; then deletions → whiteouts, file↔directory replacement, a content change
//! through a hardlink), plus one layer added with `umoci raw add-layer` from a tar written
//! here (opaque directory, whiteout of a symlink, hardlinks, implicit parents). The OCI
//! layout is packed into a tar, then:
//! - containerd (started here with its own root, state and socket under a temp dir) imports
//!   it with `ctr images import` and mounts it with `ctr images mount`;
//! - berth imports it into a [`LocalStore`] and applies the layers twice: in place into one
//!   directory, and in overlay mode into one directory per layer, mounted as overlayfs;
//! - skopeo converts the layout into a `docker save` archive (`docker-archive:`), which berth
//!   imports and applies in place a third time.
//!
//! The three trees are compared entry by entry: paths, types, modes, uid/gid, xattrs
//! (without overlayfs's own trusted.overlay.*; trusted.* from layers is ignored by both,
//! which the test checks), file contents, link targets, device numbers
//! and hardlink groups. Everything is unmounted, removed and stopped by a guard, even on
//! failure. Needs root; without root it skips with the reason; as root, missing tools fail.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use berth_engine::archive::{self, ApplyOptions, LayerRef};
use berth_engine::content::{Digest, LocalStore};
use berth_engine::images::{self, import::ImportOptions, Platform};
use nix::mount::{MntFlags, MsFlags};

use berth_test_support::host;

use host::{run, Containerd};

const NAMESPACE: &str = "berth-oracle";

/// Owns everything the test starts or mounts; `Drop` undoes it in reverse order.
struct Guard {
    dir: tempfile::TempDir,
    containerd: Option<Containerd>,
    ctr_mount: Option<PathBuf>,
    our_mount: Option<PathBuf>,
    image: Option<String>,
}

impl Guard {
    fn ctr(&self) -> Command {
        self.containerd
            .as_ref()
            .expect("containerd is started before ctr is used")
            .ctr(NAMESPACE)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(m) = self.our_mount.take() {
            if let Err(e) = nix::mount::umount2(&m, MntFlags::MNT_DETACH) {
                eprintln!("cleanup: umount {}: {e}", m.display());
            }
        }
        if let Some(m) = self.ctr_mount.take() {
            let r = run(self.ctr().args(["images", "unmount", "--rm"]).arg(&m));
            if let Err(e) = r {
                eprintln!("cleanup: {e:#}");
                let _ = nix::mount::umount2(&m, MntFlags::MNT_DETACH);
            }
        }
        if let Some(image) = self.image.take() {
            if let Err(e) = run(self.ctr().args(["images", "rm", "--sync", &image])) {
                eprintln!("cleanup: {e:#}");
            }
        }
        // Stops containerd and detaches anything it left mounted.
        drop(self.containerd.take());
        host::unmount_below(self.dir.path());
    }
}

fn mknod(
    path: &Path,
    kind: nix::sys::stat::SFlag,
    perm: u32,
    major: u64,
    minor: u64,
) -> Result<()> {
    nix::sys::stat::mknod(
        path,
        kind,
        nix::sys::stat::Mode::from_bits_truncate(perm),
        nix::sys::stat::makedev(major, minor),
    )
    .with_context(|| format!("mknod {}", path.display()))
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

fn long_name() -> String {
    format!("long/{}/{}", "n".repeat(120), "f".repeat(180))
}

/// The first layer's tree.
fn populate_layer1(r: &Path) -> Result<()> {
    use nix::sys::stat::SFlag;
    for d in [
        "etc",
        "bin",
        "tmp",
        "data",
        "dev",
        "d2f",
        "gonedir",
        "opq/olddir",
        "unicode",
        "long",
    ] {
        fs::create_dir_all(r.join(d))?;
    }
    fs::write(r.join("etc/hello"), b"hello\n")?;
    fs::hard_link(r.join("etc/hello"), r.join("etc/hello.hard"))?;
    xattr::set(r.join("etc/hello"), "user.color", b"blue")?;
    fs::write(r.join("bin/suid"), b"#!/bin/true\n")?;
    chmod(&r.join("bin/suid"), 0o4755)?;
    fs::write(r.join("bin/sgid"), b"sgid\n")?;
    chown(&r.join("bin/sgid"), 0, 50)?;
    chmod(&r.join("bin/sgid"), 0o2755)?;
    chmod(&r.join("tmp"), 0o1777)?;
    fs::write(r.join("data/owned"), b"secret\n")?;
    chown(&r.join("data/owned"), 1000, 1000)?;
    chmod(&r.join("data/owned"), 0o600)?;
    xattr::set(r.join("data/owned"), "trusted.berth", b"yes")?;
    chown(&r.join("data"), 1000, 1000)?;
    chmod(&r.join("data"), 0o750)?;
    std::os::unix::fs::symlink("/etc/hello", r.join("etc/abs"))?;
    std::os::unix::fs::symlink("etc/hello", r.join("rel"))?;
    std::os::unix::fs::symlink("/nowhere", r.join("dangling"))?;
    fs::create_dir_all(r.join(long_name()).parent().unwrap())?;
    fs::write(r.join(long_name()), b"long\n")?;
    fs::write(r.join("unicode/café-日本語 ✓.txt"), "ünïcödé\n")?;
    mknod(&r.join("dev/null"), SFlag::S_IFCHR, 0o666, 1, 3)?;
    mknod(&r.join("dev/loop0"), SFlag::S_IFBLK, 0o660, 7, 0)?;
    mknod(&r.join("dev/fifo"), SFlag::S_IFIFO, 0o644, 0, 0)?;
    fs::write(r.join("f2d"), b"file, then a directory\n")?;
    fs::write(r.join("d2f/child"), b"dir, then a file\n")?;
    fs::write(r.join("gone"), b"deleted in layer 2\n")?;
    fs::write(r.join("gonedir/x"), b"deleted with its dir\n")?;
    fs::write(r.join("opq/old1"), b"hidden by the opaque dir\n")?;
    fs::write(r.join("opq/olddir/y"), b"also hidden\n")?;
    Ok(())
}

/// The second layer's changes (umoci turns deletions into whiteouts).
fn modify_layer2(r: &Path) -> Result<()> {
    fs::remove_file(r.join("gone"))?;
    fs::remove_dir_all(r.join("gonedir"))?;
    fs::remove_file(r.join("f2d"))?;
    fs::create_dir(r.join("f2d"))?;
    fs::write(r.join("f2d/child"), b"now a directory\n")?;
    // Directory → file is in layer 3: umoci 0.4.7 writes `d2f` then `d2f/.wh.child` for it,
    // a layer containerd (and berth) refuse ("d2f: not a directory").
    // Through one name of a hardlink pair: both names change.
    fs::write(r.join("etc/hello"), b"hello again\n")?;
    chmod(&r.join("data"), 0o700)?;
    xattr::set(r.join("f2d"), "user.kind", b"dir")?;
    Ok(())
}

/// The third layer, written by hand: an opaque directory, a whiteout of a symlink,
/// hardlinks and implicit parents.
fn layer3_tar() -> Result<Vec<u8>> {
    use tar::{EntryType, Header};
    let mut b = tar::Builder::new(Vec::new());
    let mut add =
        |name: &str, kind: EntryType, mode: u32, link: Option<&str>, data: &[u8]| -> Result<()> {
            let mut h = Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            match link {
                Some(l) => b.append_link(&mut h, name, l)?,
                None => b.append_data(&mut h, name, data)?,
            }
            Ok(())
        };
    add("opq/", EntryType::Directory, 0o755, None, b"")?;
    add("opq/.wh..wh..opq", EntryType::Regular, 0o644, None, b"")?;
    add(
        "opq/new",
        EntryType::Regular,
        0o644,
        None,
        b"new in layer 3\n",
    )?;
    add(".wh.rel", EntryType::Regular, 0o644, None, b"")?;
    add("l3a", EntryType::Regular, 0o640, None, b"linked\n")?;
    add("l3b", EntryType::Link, 0o640, Some("l3a"), b"")?;
    // Replaces layer 1's directory `d2f/` (no whiteout needed: a non-directory entry replaces
    // whatever is below it).
    add("d2f", EntryType::Regular, 0o600, None, b"now a file\n")?;
    add(
        "deep/implicit/file",
        EntryType::Regular,
        0o644,
        None,
        b"parents not in the tar\n",
    )?;
    Ok(b.into_inner()?)
}

/// Builds the image with umoci and packs its layout into a tar.
fn build_image(work: &Path) -> Result<PathBuf> {
    let layout = work.join("oci");
    let image = format!("{}:img", layout.display());
    let bundle = work.join("bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    run(Command::new("umoci").args(["new", "--image", &image]))?;
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle))?;
    populate_layer1(&bundle.join("rootfs"))?;
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    fs::remove_dir_all(&bundle)?;
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle))?;
    modify_layer2(&bundle.join("rootfs"))?;
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))?;
    let l3 = work.join("layer3.tar");
    fs::write(&l3, layer3_tar()?)?;
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&l3))?;
    // The same image as a `docker save` archive, written by skopeo.
    run(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{image}"))
        .arg(format!(
            "docker-archive:{}:berth/oracle:1",
            work.join("docker.tar").display()
        )))?;
    let archive = work.join("image.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"]))?;
    Ok(archive)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// Content digest for files, target for symlinks, rdev for devices.
    detail: String,
}

struct Tree {
    entries: BTreeMap<PathBuf, Rec>,
    hardlink_groups: BTreeSet<Vec<PathBuf>>,
}

fn scan(root: &Path) -> Result<Tree> {
    let mut entries = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let p = e?.path();
            let m = fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root)?.to_path_buf();
            let ft = m.file_type();
            let (kind, detail) = if ft.is_dir() {
                todo.push(p.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                ("symlink", fs::read_link(&p)?.display().to_string())
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    inodes.entry(m.ino()).or_default().push(rel.clone());
                }
                ("file", Digest::of(&fs::read(&p)?).to_string())
            } else if ft.is_char_device() {
                (
                    "char",
                    format!(
                        "{}:{}",
                        nix::sys::stat::major(m.rdev()),
                        nix::sys::stat::minor(m.rdev())
                    ),
                )
            } else if ft.is_block_device() {
                (
                    "block",
                    format!(
                        "{}:{}",
                        nix::sys::stat::major(m.rdev()),
                        nix::sys::stat::minor(m.rdev())
                    ),
                )
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else {
                ("other", String::new())
            };
            let mut xattrs = BTreeMap::new();
            for name in xattr::list(&p)? {
                let name = name.to_string_lossy().into_owned();
                if name.starts_with("trusted.overlay.") {
                    continue;
                }
                if let Some(v) = xattr::get(&p, &name)? {
                    xattrs.insert(name, v);
                }
            }
            entries.insert(
                rel,
                Rec {
                    kind,
                    mode: m.mode(),
                    uid: m.uid(),
                    gid: m.gid(),
                    xattrs,
                    detail,
                },
            );
        }
    }
    let hardlink_groups = inodes
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    Ok(Tree {
        entries,
        hardlink_groups,
    })
}

fn compare(what: &str, oracle: &Tree, ours: &Tree) -> Vec<String> {
    let mut diffs = Vec::new();
    for (path, rec) in &oracle.entries {
        match ours.entries.get(path) {
            None => diffs.push(format!("{what}: missing {}: {rec:?}", path.display())),
            Some(o) if o != rec => diffs.push(format!(
                "{what}: {} differs:\n  containerd {rec:?}\n  berth      {o:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in ours.entries.keys() {
        if !oracle.entries.contains_key(path) {
            diffs.push(format!(
                "{what}: extra {}: {:?}",
                path.display(),
                ours.entries[path]
            ));
        }
    }
    if oracle.hardlink_groups != ours.hardlink_groups {
        diffs.push(format!(
            "{what}: hardlink groups differ: containerd {:?}, berth {:?}",
            oracle.hardlink_groups, ours.hardlink_groups
        ));
    }
    diffs
}

#[test]
fn berth_unpacks_the_same_tree_as_containerd() -> Result<()> {
    if !host::root_and_tools(
        "unpack oracle",
        &["umoci", "skopeo", "containerd", "ctr", "runc", "tar"],
    )? {
        return Ok(());
    }
    let started = Instant::now();
    let mut g = Guard {
        dir: tempfile::Builder::new().prefix("berth-oracle").tempdir()?,
        containerd: None,
        ctr_mount: None,
        our_mount: None,
        image: None,
    };
    let work = g.dir.path().to_path_buf();
    let archive = build_image(&work)?;
    println!("image built with umoci in {:?}", started.elapsed());

    // containerd: import, mount.
    g.containerd = Some(Containerd::start(&work.join("ctd"))?);
    let t = Instant::now();
    run(g.ctr().args(["images", "import"]).arg(&archive))?;
    let names = run(g.ctr().args(["images", "ls", "-q"]))?;
    let name = names
        .lines()
        .next()
        .context("ctr imported no image")?
        .to_owned();
    g.image = Some(name.clone());
    let ctr_mount = work.join("ctr-mount");
    fs::create_dir(&ctr_mount)?;
    run(g.ctr().args(["images", "mount", &name]).arg(&ctr_mount))?;
    g.ctr_mount = Some(ctr_mount.clone());
    println!("containerd: import + mount of {name} in {:?}", t.elapsed());

    // berth: import, resolve, apply in both modes.
    let t = Instant::now();
    let store = LocalStore::open(work.join("berth"))?;
    let report = images::import::import_archive(
        &store,
        fs::File::open(&archive)?,
        &ImportOptions::default(),
    )?;
    ensure!(
        report.images.len() == 1,
        "berth imported {:?}",
        report.images
    );
    let image = images::resolve(&store, &report.images[0].target, &Platform::default())?;
    ensure!(
        image.layers.len() == 3,
        "expected 3 layers, got {}",
        image.layers.len()
    );
    let in_place = work.join("berth-inplace");
    fs::create_dir(&in_place)?;
    let mut uppers: Vec<PathBuf> = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let r = LayerRef {
            digest: layer.digest,
            size: layer.size,
            media_type: layer.media_type.clone(),
            diff_id: Some(layer.diff_id),
        };
        let blob = store.blob_path(&layer.digest);
        let stats = archive::apply_layer_file(&in_place, &blob, &r, &ApplyOptions::in_place())?;
        let upper = work.join(format!("berth-layer{i}"));
        fs::create_dir(&upper)?;
        let lowers = uppers.iter().rev().cloned().collect();
        archive::apply_layer_file(&upper, &blob, &r, &ApplyOptions::overlay(lowers))?;
        uppers.push(upper);
        println!(
            "berth: layer {i} {} ({}): {} entries, {} bytes, {} whiteouts",
            layer.digest, layer.media_type, stats.entries, stats.bytes, stats.whiteouts
        );
    }
    // The docker save form of the same image, imported and applied in place.
    let docker = images::import::import_archive(
        &store,
        fs::File::open(work.join("docker.tar"))?,
        &ImportOptions::default(),
    )?;
    ensure!(
        docker.images.len() == 1
            && docker.images[0].name.as_deref() == Some("docker.io/berth/oracle:1"),
        "docker archive imported as {:?}",
        docker.images
    );
    let docker_image = images::resolve(&store, &docker.images[0].target, &Platform::default())?;
    let from_docker = work.join("berth-docker");
    fs::create_dir(&from_docker)?;
    for layer in &docker_image.layers {
        let r = LayerRef {
            digest: layer.digest,
            size: layer.size,
            media_type: layer.media_type.clone(),
            diff_id: Some(layer.diff_id),
        };
        archive::apply_layer_file(
            &from_docker,
            &store.blob_path(&layer.digest),
            &r,
            &ApplyOptions::in_place(),
        )?;
    }
    println!(
        "berth: docker-archive (skopeo) import: {} layers ({})",
        docker_image.layers.len(),
        docker_image.layers[0].media_type
    );
    let merged = work.join("berth-merged");
    fs::create_dir(&merged)?;
    let lowerdir = uppers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(format!("lowerdir={lowerdir}").as_str()),
    )
    .context("mount berth's layers as overlayfs")?;
    g.our_mount = Some(merged.clone());
    println!("berth: import + unpack (both modes) in {:?}", t.elapsed());

    let oracle = scan(&ctr_mount)?;
    let mut diffs = compare("in-place", &oracle, &scan(&in_place)?);
    diffs.extend(compare("overlay", &oracle, &scan(&merged)?));
    diffs.extend(compare("docker-archive", &oracle, &scan(&from_docker)?));
    println!("trees compared: containerd's mount vs berth in-place, berth overlay mount, berth from the docker archive");
    let count = |k: &str| oracle.entries.values().filter(|r| r.kind == k).count();
    println!(
        "compared {} paths ({} dirs, {} files, {} symlinks, {} char, {} block, {} fifos; {} with xattrs; \
         {} hardlink groups) on paths, types, modes, uid/gid, xattrs, contents, link targets, \
         device numbers and hardlink groups: {} differences",
        oracle.entries.len(),
        count("dir"),
        count("file"),
        count("symlink"),
        count("char"),
        count("block"),
        count("fifo"),
        oracle.entries.values().filter(|r| !r.xattrs.is_empty()).count(),
        oracle.hardlink_groups.len(),
        diffs.len()
    );
    // The oracle must have seen what the test is about, or the comparison proves little.
    for (path, kind) in [
        ("opq/new", "file"),
        ("f2d/child", "file"),
        ("d2f", "file"),
        ("dev/null", "char"),
        ("dev/loop0", "block"),
        ("dev/fifo", "fifo"),
        ("deep/implicit/file", "file"),
    ] {
        ensure!(
            oracle.entries.get(Path::new(path)).map(|r| r.kind) == Some(kind),
            "containerd's tree lacks {path} ({kind})"
        );
    }
    for gone in ["gone", "gonedir", "opq/old1", "opq/olddir", "rel"] {
        ensure!(
            !oracle.entries.contains_key(Path::new(gone)),
            "containerd's tree still has {gone}"
        );
    }
    // The layer carries trusted.berth on data/owned; both engines must have ignored it.
    ensure!(
        oracle.entries[Path::new("data/owned")].xattrs.is_empty(),
        "containerd applied a trusted.* xattr from the layer"
    );
    ensure!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
    println!("total {:?}", started.elapsed());
    Ok(())
}
