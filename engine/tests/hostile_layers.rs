//! Hostile layers: every way a layer (or an archive) tries to write outside the target or
//! smuggle unverified bytes in. A canary directory beside the target — plus the absolute
//! path the hostile names aim at — must be unchanged after each case, and each case must end
//! either *contained* (the file landed inside the root, where the test looks for it) or in
//! an error naming the entry or the layer. Each traversal case runs in both unpack modes.
//!
//! Runs as root (chown/mknod in the applier); skips visibly otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_engine::archive::{self, ApplyOptions, Error, LayerRef};
use berth_engine::content::{Digest, LocalStore};
use berth_engine::images::import::{import_archive, ImportOptions};
use berth_engine::images::media;
use tar::{EntryType, Header};

/// A layer tar with names written raw into the header, so `..` and absolute names survive
/// (the tar crate's `set_path` refuses them).
#[derive(Default)]
struct Layer(Vec<(EntryType, String, String, Vec<u8>)>);

impl Layer {
    fn file(mut self, name: &str, data: &[u8]) -> Self {
        self.0.push((
            EntryType::Regular,
            name.into(),
            String::new(),
            data.to_vec(),
        ));
        self
    }
    fn symlink(mut self, name: &str, target: &str) -> Self {
        self.0
            .push((EntryType::Symlink, name.into(), target.into(), Vec::new()));
        self
    }
    fn hardlink(mut self, name: &str, target: &str) -> Self {
        self.0
            .push((EntryType::Link, name.into(), target.into(), Vec::new()));
        self
    }
    fn tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (kind, name, link, data) in &self.0 {
            let mut h = Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            assert!(
                name.len() < 100 && link.len() < 100,
                "raw names must fit the header"
            );
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            b.append(&h, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }
}

/// Everything about a tree that an escape could change: paths, types, modes, owners,
/// contents, link targets.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let what = if m.is_dir() {
                todo.push(p.clone());
                "dir".to_owned()
            } else if m.is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("file {}", Digest::of(&fs::read(&p).unwrap()))
            };
            out.insert(
                p.strip_prefix(dir).unwrap().to_owned(),
                format!("{what} {:o} {}:{}", m.mode(), m.uid(), m.gid()),
            );
        }
    }
    out
}

enum Expect {
    /// The write landed at this path inside the root (in some layer's dir in overlay mode).
    Contained(&'static str),
    /// An error whose text (with its sources) contains this.
    Error(&'static str),
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    canary: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().to_path_buf();
        let canary = base.join("canary");
        fs::create_dir(&canary).unwrap();
        fs::write(canary.join("file"), b"precious").unwrap();
        fs::create_dir(canary.join("sub")).unwrap();
        fs::write(canary.join("sub/more"), b"also precious").unwrap();
        Self {
            _dir: dir,
            base,
            canary,
        }
    }
}

/// Applies `layers` in both modes and checks the canary and the outcome.
fn run(name: &str, layers: &[Layer], expect: Expect) {
    for overlay in [false, true] {
        let sb = Sandbox::new();
        let before = snapshot(&sb.canary);
        let mode = if overlay { "overlay" } else { "in-place" };
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut result = Ok(());
        for (i, layer) in layers.iter().enumerate() {
            let opts = if overlay {
                let dir = sb.base.join(format!("layer{i}"));
                fs::create_dir(&dir).unwrap();
                let lowers = dirs.iter().rev().cloned().collect();
                dirs.push(dir);
                ApplyOptions::overlay(lowers)
            } else {
                if dirs.is_empty() {
                    let dir = sb.base.join("root");
                    fs::create_dir(&dir).unwrap();
                    dirs.push(dir);
                }
                ApplyOptions::in_place()
            };
            let target = dirs.last().unwrap().clone();
            if let Err(e) =
                archive::apply_tar(&target, &layer.tar()[..], &format!("layer{i}"), &opts)
            {
                result = Err(e);
                break;
            }
        }
        assert_eq!(
            snapshot(&sb.canary),
            before,
            "{name} ({mode}): the canary changed"
        );
        match (&expect, result) {
            (Expect::Contained(rel), Ok(())) => {
                // `a|b`: either place is inside (in-place and overlay resolve differently).
                let found = rel.split('|').find(|rel| {
                    dirs.iter().any(|d| {
                        let p = d.join(rel.trim_start_matches('/'));
                        p.exists()
                            && p.canonicalize()
                                .unwrap()
                                .starts_with(d.canonicalize().unwrap())
                    })
                });
                let Some(rel) = found else {
                    panic!("{name} ({mode}): expected the write contained at {rel}");
                };
                println!("{name} ({mode}): contained at <root>/{rel}");
            }
            (Expect::Error(want), Err(e)) => {
                let text = chain(&e);
                assert!(
                    text.contains(want),
                    "{name} ({mode}): error {text:?} lacks {want:?}"
                );
                println!("{name} ({mode}): refused: {text}");
            }
            (Expect::Contained(_), Err(e)) => {
                panic!("{name} ({mode}): expected containment, got {}", chain(&e))
            }
            (Expect::Error(_), Ok(())) => panic!("{name} ({mode}): expected an error, got success"),
        }
    }
}

fn root_or_skip() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: hostile layer tests need root (the applier chowns and mknods)");
    false
}

#[test]
fn path_traversal_is_contained() {
    if !root_or_skip() {
        return;
    }
    run(
        "dot-dot traversal",
        &[Layer::default().file("../canary/pwned", b"x")],
        Expect::Contained("canary/pwned"),
    );
    run(
        "deep dot-dot traversal",
        &[Layer::default().file("a/../../../../../../../../../etc/berth-pwned", b"x")],
        Expect::Contained("etc/berth-pwned"),
    );
    // The file must not exist on the host either.
    assert!(!Path::new("/etc/berth-pwned").exists());
}

#[test]
fn absolute_paths_are_contained() {
    if !root_or_skip() {
        return;
    }
    run(
        "absolute path",
        &[Layer::default().file("/tmp/berth-hostile-abs", b"x")],
        Expect::Contained("tmp/berth-hostile-abs"),
    );
    assert!(!Path::new("/tmp/berth-hostile-abs").exists());
}

#[test]
fn symlink_escapes_are_contained() {
    if !root_or_skip() {
        return;
    }
    // Absolute symlink to the host's /tmp, then a write through it.
    run(
        "absolute-symlink escape",
        &[Layer::default()
            .symlink("esc", "/tmp")
            .file("esc/berth-hostile-abslink", b"x")],
        Expect::Contained("tmp/berth-hostile-abslink"),
    );
    assert!(!Path::new("/tmp/berth-hostile-abslink").exists());
    // Relative symlink climbing out of the root (to the canary beside it).
    run(
        "symlink-parent escape",
        &[Layer::default()
            .symlink("up", "../canary")
            .file("up/pwned", b"x")
            .file("up/file", b"overwritten?")],
        Expect::Contained("canary/pwned"),
    );
    run(
        "symlink-parent escape, deep",
        &[Layer::default()
            .symlink("up", "../../../../../../..")
            .file("up/tmp/berth-hostile-deep", b"x")],
        Expect::Contained("tmp/berth-hostile-deep"),
    );
    assert!(!Path::new("/tmp/berth-hostile-deep").exists());
}

#[test]
fn symlink_planted_in_one_layer_and_written_through_in_the_next_is_contained() {
    if !root_or_skip() {
        return;
    }
    run(
        "planted symlink, next layer writes through it",
        &[
            Layer::default().symlink("lnk", "../canary"),
            Layer::default()
                .file("lnk/pwned", b"x")
                .file("lnk/file", b"overwritten?"),
        ],
        // In place the symlink resolves inside the root (<root>/canary); in overlay mode the
        // upper has no symlink, so a plain directory is made there (as containerd does).
        // Both are inside.
        Expect::Contained("canary/pwned|lnk/pwned"),
    );
    run(
        "planted symlink as final component, next layer writes the same name",
        &[
            Layer::default().symlink("f", "../canary/file"),
            Layer::default().file("f", b"replaced the link, not the target"),
        ],
        Expect::Contained("f"),
    );
}

#[test]
fn hardlink_escapes_are_refused_naming_the_entry() {
    if !root_or_skip() {
        return;
    }
    run(
        "hardlink escape via dot-dot",
        &[Layer::default().hardlink("hl", "../canary/file")],
        Expect::Error("entry \"hl\""),
    );
    run(
        "hardlink escape via absolute path",
        &[Layer::default().hardlink("hl2", "/etc/passwd")],
        Expect::Error("entry \"hl2\""),
    );
    run(
        "hardlink escape via symlinked parent",
        &[Layer::default()
            .symlink("s", "../canary")
            .hardlink("hl3", "s/file")],
        Expect::Error("entry \"hl3\""),
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

#[test]
fn truncated_and_mismatched_layers_fail_naming_the_layer() {
    if !root_or_skip() {
        return;
    }
    let tar = Layer::default()
        .file("big", &vec![1u8; 300_000])
        .file("after", b"x")
        .tar();
    let gz = gzip(&tar);
    let cases: Vec<(&str, Vec<u8>, Option<Digest>)> = vec![
        ("truncated gzip", gz[..gz.len() * 2 / 3].to_vec(), None),
        (
            "wrong digest",
            gz.clone(),
            Some(Digest::of(b"not this layer")),
        ),
    ];
    for (name, blob, digest) in cases {
        let sb = Sandbox::new();
        let before = snapshot(&sb.canary);
        let root = sb.base.join("root");
        fs::create_dir(&root).unwrap();
        let layer = LayerRef {
            digest: digest.unwrap_or_else(|| Digest::of(&blob)),
            size: blob.len() as u64,
            media_type: media::OCI_LAYER_GZIP.to_owned(),
            diff_id: Some(Digest::of(&tar)),
        };
        let err =
            archive::apply_layer(&root, &blob[..], &layer, &ApplyOptions::in_place()).unwrap_err();
        let text = chain(&err);
        assert!(text.contains(&layer.digest.to_string()), "{name}: {text}");
        match name {
            "truncated gzip" => assert!(matches!(err, Error::Read { .. }), "{name}: {err:?}"),
            _ => assert!(
                matches!(err, Error::DigestMismatch { .. }),
                "{name}: {err:?}"
            ),
        }
        assert_eq!(snapshot(&sb.canary), before, "{name}: the canary changed");
        println!("{name}: refused: {text}");
    }
}

#[test]
fn import_of_a_layout_with_a_missing_blob_fails_naming_it() {
    let sb = Sandbox::new();
    let before = snapshot(&sb.canary);
    let store = LocalStore::open(sb.base.join("store")).unwrap();
    let tar = Layer::default().file("f", b"x").tar();
    let layer = gzip(&tar);
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&tar).to_string()]}}))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": media::OCI_LAYER_GZIP, "digest": Digest::of(&layer).to_string(), "size": layer.len()}]}))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": media::OCI_MANIFEST, "digest": Digest::of(&manifest).to_string(), "size": manifest.len()}]}))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        (
            "oci-layout".to_owned(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        (
            format!("blobs/sha256/{}", Digest::of(&manifest).encoded()),
            manifest.clone(),
        ),
        (
            format!("blobs/sha256/{}", Digest::of(&config).encoded()),
            config.clone(),
        ),
        ("index.json".to_owned(), index),
    ] {
        let mut h = Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let archive = b.into_inner().unwrap();
    let err = import_archive(&store, &archive[..], &ImportOptions::default()).unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains(&Digest::of(&layer).to_string()) && text.contains("missing"),
        "{text}"
    );
    assert_eq!(snapshot(&sb.canary), before);
    println!("missing blob: refused: {text}");
}
