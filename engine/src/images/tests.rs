//! Unit tests for image documents, platform selection, chain IDs, labels, import and export.

use std::io::Write;

use super::import::{import_archive, normalize_reference, ImportError, ImportOptions};
use super::*;
use crate::content::{Ingester, LocalStore, Manager};

fn put(store: &LocalStore, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let mut w = store.writer(&format!("t-{d}"), None).unwrap();
    w.write_all(data).unwrap();
    match w.commit(data.len() as u64, d) {
        Ok(_) | Err(crate::content::Error::AlreadyExists { .. }) => d,
        Err(e) => panic!("{e}"),
    }
}

fn layer_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, name, &b"abc"[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// An image with two gzip layers: (manifest bytes, config bytes, layer blobs).
fn image(arch: &str) -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let tars = [layer_tar("a"), layer_tar(&format!("b-{arch}"))];
    let blobs: Vec<Vec<u8>> = tars.iter().map(|t| gzip(t)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": tars.iter().map(|t| Digest::of(t).to_string()).collect::<Vec<_>>()},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": blobs.iter().map(|b| serde_json::json!({"mediaType": media::OCI_LAYER_GZIP, "digest": Digest::of(b).to_string(), "size": b.len()})).collect::<Vec<_>>(),
    }))
    .unwrap();
    (manifest, config, blobs)
}

fn index_of(manifests: &[(&[u8], &str)]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": manifests.iter().map(|(m, arch)| serde_json::json!({
            "mediaType": media::OCI_MANIFEST, "digest": Digest::of(m).to_string(), "size": m.len(),
            "platform": {"architecture": arch, "os": "linux"}})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[test]
fn chain_ids_follow_the_spec() {
    let a = Digest::of(b"a");
    let b = Digest::of(b"b");
    let chain = chain_ids(&[a, b]);
    assert_eq!(chain[0], a);
    assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
    assert!(chain_ids(&[]).is_empty());
}

#[test]
fn parse_errors_name_the_digest_and_the_problem() {
    let d = Digest::of(b"x");
    let err = parse_manifest(&d, b"{", None).unwrap_err().to_string();
    assert!(
        err.contains(&d.to_string()) && err.contains("manifest"),
        "{err}"
    );
    let v1 = br#"{"schemaVersion":1,"config":{"mediaType":"a","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
    let err = parse_manifest(&d, v1, None).unwrap_err().to_string();
    assert!(err.contains("schemaVersion is 1"), "{err}");
    let (m, _, _) = image("amd64");
    let err = parse_manifest(&d, &m, Some(media::DOCKER_MANIFEST))
        .unwrap_err()
        .to_string();
    assert!(err.contains("differs from the descriptor"), "{err}");
}

#[test]
fn resolves_an_index_for_the_platform_with_labels() {
    let t = tempfile::tempdir().unwrap();
    let store = LocalStore::open(t.path()).unwrap();
    let (m_amd, c_amd, l_amd) = image("amd64");
    let (m_arm, c_arm, l_arm) = image("arm64");
    for blob in [&m_amd, &c_amd, &m_arm, &c_arm]
        .into_iter()
        .chain(&l_amd)
        .chain(&l_arm)
    {
        put(&store, blob);
    }
    let index = index_of(&[(&m_arm, "arm64"), (&m_amd, "amd64")]);
    let idx = put(&store, &index);
    let target = descriptor(media::OCI_INDEX, &idx, index.len() as u64);
    let img = resolve(&store, &target, &Platform::default()).unwrap();
    assert_eq!(
        img.manifest_descriptor.digest().to_string(),
        Digest::of(&m_amd).to_string()
    );
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[0].chain_id, img.layers[0].diff_id);
    let arm = resolve(&store, &target, &"linux/arm64".parse().unwrap()).unwrap();
    assert_eq!(
        arm.config_descriptor.digest().to_string(),
        Digest::of(&c_arm).to_string()
    );
    let err = resolve(&store, &target, &"linux/s390x".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64, linux/amd64"),
        "{err}"
    );

    let labels = gc_ref_labels(&target, &index).unwrap();
    assert_eq!(
        labels[&format!("{GC_REF_CONTENT_PREFIX}.m.1")],
        Digest::of(&m_amd).to_string()
    );
    let mdesc = descriptor(media::OCI_MANIFEST, &Digest::of(&m_amd), m_amd.len() as u64);
    let labels = gc_ref_labels(&mdesc, &m_amd).unwrap();
    assert_eq!(
        labels["containerd.io/gc.ref.content.config"],
        Digest::of(&c_amd).to_string()
    );
    assert_eq!(
        labels["containerd.io/gc.ref.content.l.1"],
        Digest::of(&l_amd[1]).to_string()
    );
    let (k, v) = gc_snapshot_label("overlayfs", &img.top_chain_id().unwrap());
    assert_eq!(k, "containerd.io/gc.ref.snapshot.overlayfs");
    assert_eq!(v, img.layers[1].chain_id.to_string());
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn blob_name(data: &[u8]) -> String {
    format!("blobs/sha256/{}", Digest::of(data).encoded())
}

#[test]
fn imports_an_oci_layout_and_exports_it_back() {
    let t = tempfile::tempdir().unwrap();
    let store = LocalStore::open(t.path()).unwrap();
    let (m, c, l) = image("amd64");
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": media::OCI_MANIFEST, "digest": Digest::of(&m).to_string(), "size": m.len(),
        "annotations": {ANNOTATION_REF_NAME: "latest"}}]}))
    .unwrap();
    let names = [
        blob_name(&m),
        blob_name(&c),
        blob_name(&l[0]),
        blob_name(&l[1]),
    ];
    let archive = tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        (&names[0], &m),
        (&names[1], &c),
        (&names[2], &l[0]),
        (&names[3], &l[1]),
        ("index.json", &index),
    ]);
    let report = import_archive(&store, &archive[..], &ImportOptions::default()).unwrap();
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].name.as_deref(), Some("latest"));
    assert_eq!(report.blobs.len(), 4);
    // Export, then import the export into a second store.
    let mut out = Vec::new();
    let stats = export::export_oci(
        &store,
        &[export::ExportImage {
            name: "example.com/app:1".into(),
            target: report.images[0].target.clone(),
        }],
        &Platform::default(),
        &mut out,
    )
    .unwrap();
    assert_eq!(stats.blobs, 4);
    let t2 = tempfile::tempdir().unwrap();
    let store2 = LocalStore::open(t2.path()).unwrap();
    let again = import_archive(&store2, &out[..], &ImportOptions::default()).unwrap();
    assert_eq!(again.images[0].name.as_deref(), Some("example.com/app:1"));
    assert_eq!(
        again.images[0].target.digest(),
        report.images[0].target.digest()
    );
    assert_eq!(store2.list().unwrap().len(), 4);
}

#[test]
fn import_refuses_bad_blobs_naming_them() {
    let t = tempfile::tempdir().unwrap();
    let store = LocalStore::open(t.path()).unwrap();
    let (m, c, l) = image("amd64");
    let index = index_of(&[(&m, "amd64")]);
    // A blob whose content does not match its name.
    let wrong = blob_name(b"something else");
    let archive = tar_of(&[(&wrong, &c), ("index.json", &index)]);
    let err = import_archive(&store, &archive[..], &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, ImportError::DigestMismatch { path, .. } if *path == wrong),
        "{err:?}"
    );
    // A layer the manifest references but the archive lacks.
    let archive = tar_of(&[
        (&blob_name(&m), &m),
        (&blob_name(&c), &c),
        (&blob_name(&l[0]), &l[0]),
        ("index.json", &index),
    ]);
    let err = import_archive(&store, &archive[..], &ImportOptions::default()).unwrap_err();
    let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        text.contains(&Digest::of(&l[1]).to_string()) && text.contains("missing"),
        "{text}"
    );
    // No ingest is left behind by the failures.
    assert!(crate::content::IngestManager::list_statuses(&store)
        .unwrap()
        .is_empty());
}

#[test]
fn imports_docker_save_archives_with_several_images() {
    let t = tempfile::tempdir().unwrap();
    let store = LocalStore::open(t.path()).unwrap();
    let tars = [layer_tar("one"), layer_tar("two")];
    let config = |n: usize| {
        serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": tars[..n].iter().map(|t| Digest::of(t).to_string()).collect::<Vec<_>>()}}))
        .unwrap()
    };
    let (c1, c2) = (config(1), config(2));
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": "c1.json", "RepoTags": ["busybox:1", "me/app"], "Layers": ["l1/layer.tar"]},
        {"Config": "c2.json", "RepoTags": null, "Layers": ["l1/layer.tar", "l2/layer.tar"]},
    ]))
    .unwrap();
    let archive = tar_of(&[
        ("c1.json", &c1),
        ("c2.json", &c2),
        ("l1/layer.tar", &tars[0]),
        ("l2/layer.tar", &tars[1]),
        ("manifest.json", &manifest),
        ("repositories", b"{}"),
    ]);
    let report = import_archive(&store, &archive[..], &ImportOptions::default()).unwrap();
    let names: Vec<_> = report.images.iter().map(|i| i.name.clone()).collect();
    assert_eq!(
        names,
        vec![
            Some("docker.io/library/busybox:1".to_owned()),
            Some("docker.io/me/app:latest".to_owned()),
            None
        ]
    );
    let img = resolve(&store, &report.images[2].target, &Platform::default()).unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[1].media_type, media::DOCKER_LAYER);
    assert_eq!(
        img.manifest_descriptor.media_type().to_string(),
        media::DOCKER_MANIFEST
    );

    // A legacy layer that does not hash to its diff ID.
    let archive = tar_of(&[
        ("c1.json", &c1),
        ("l1/layer.tar", &tars[1]),
        ("manifest.json", &manifest),
    ]);
    let err = import_archive(&store, &archive[..], &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&err, ImportError::DigestMismatch { path, .. } if path == "l1/layer.tar"),
        "{err:?}"
    );
}

#[test]
fn normalizes_docker_references() {
    assert_eq!(
        normalize_reference("busybox"),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(normalize_reference("me/app:2"), "docker.io/me/app:2");
    assert_eq!(
        normalize_reference("localhost:5000/x"),
        "localhost:5000/x:latest"
    );
    assert_eq!(normalize_reference("quay.io/a/b:c"), "quay.io/a/b:c");
}
