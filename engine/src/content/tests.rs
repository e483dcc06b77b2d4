//! Tests of [`LocalStore`] on a real filesystem (a temporary directory).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};

use super::*;

fn store() -> (tempfile::TempDir, LocalStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    (dir, store)
}

fn blob_names(store: &LocalStore) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn put(store: &LocalStore, reference: &str, data: &[u8]) -> Result<Digest> {
    let mut w = store.writer(reference, None)?;
    w.write(data)?;
    w.commit(data.len() as u64, Digest::of(data))
}

#[test]
fn write_commit_read_back() {
    let (_dir, store) = store();
    let data = b"hello, berth";
    let digest = Digest::of(data);
    let mut w = store
        .writer("ref-1", Some((digest, data.len() as u64)))
        .unwrap();
    w.write_at(0, &data[..5]).unwrap();
    w.write_at(5, &data[5..]).unwrap();
    assert_eq!(w.digest(), digest);
    assert_eq!(w.commit(data.len() as u64, digest).unwrap(), digest);

    let r = store.reader_at(&digest).unwrap();
    assert_eq!(r.size(), data.len() as u64);
    assert_eq!(r.read_range(0, u64::MAX).unwrap(), data);
    let info = store.info(&digest).unwrap();
    assert_eq!((info.digest, info.size), (digest, data.len() as u64));
    assert_eq!(store.list().unwrap(), vec![info]);
    assert!(store.list_statuses().unwrap().is_empty());
    assert!(!store.ingest_dir("ref-1").exists());
    assert!(store
        .root()
        .join("blobs/sha256")
        .join(digest.encoded())
        .is_file());
}

#[test]
fn ranged_reads_are_bounded() {
    let (_dir, store) = store();
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let digest = put(&store, "r", &data).unwrap();
    let r = store.reader_at(&digest).unwrap();
    assert_eq!(r.read_range(100, 50).unwrap(), &data[100..150]);
    assert_eq!(r.read_range(9_990, 1_000).unwrap(), &data[9_990..]);
    assert!(r.read_range(10_000, 5).unwrap().is_empty());
    let err = r.read_range(10_001, 1).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(Invalid::Range { .. })),
        "{err}"
    );
    let mut buf = [0u8; 16];
    assert_eq!(r.read_at(&mut buf, 9_996).unwrap(), 4);
    assert_eq!(&buf[..4], &data[9_996..]);
    assert_eq!(r.read_at(&mut buf, 20_000).unwrap(), 0);
}

#[test]
fn wrong_digest_is_refused_and_nothing_is_published() {
    let (_dir, store) = store();
    let mut w = store.writer("bad", None).unwrap();
    w.write(b"actual bytes").unwrap();
    let claimed = Digest::of(b"other bytes");
    let err = w.commit(12, claimed).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::InvalidArgument(Invalid::DigestMismatch { .. })),
        "{msg}"
    );
    assert!(
        msg.contains(&claimed.to_string())
            && msg.contains(&Digest::of(b"actual bytes").to_string()),
        "{msg}"
    );
    assert!(blob_names(&store).is_empty());
    // The ingest stays, to be resumed or aborted.
    assert_eq!(store.status("bad").unwrap().offset, 12);
}

#[test]
fn wrong_size_is_refused_and_nothing_is_published() {
    let (_dir, store) = store();
    let data = b"twelve bytes";
    let mut w = store.writer("short", None).unwrap();
    w.write(data).unwrap();
    let err = w.commit(13, Digest::of(data)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::InvalidArgument(Invalid::SizeMismatch {
                expected: 13,
                actual: 12,
                ..
            })
        ),
        "{msg}"
    );
    assert!(
        msg.contains("expected 13") && msg.contains("have 12"),
        "{msg}"
    );
    assert!(blob_names(&store).is_empty());

    // An expectation given at open is enforced too, early on writes past it.
    let mut w = store.writer("expect", Some((Digest::of(data), 4))).unwrap();
    let err = w.write(data).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument(Invalid::SizeMismatch {
                expected: 4,
                actual: 12,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(w.offset(), 0);
}

#[test]
fn resume_after_dropping_a_writer() {
    let (_dir, store) = store();
    let data = b"first half|second half";
    let digest = Digest::of(data);
    let mut w = store
        .writer("resume", Some((digest, data.len() as u64)))
        .unwrap();
    w.write(&data[..11]).unwrap();
    drop(w);

    let status = store.status("resume").unwrap();
    assert_eq!(
        (status.offset, status.total, status.expected),
        (11, data.len() as u64, Some(digest))
    );
    assert_eq!(store.list_statuses().unwrap(), vec![status.clone()]);

    // Reopened without an expectation: the stored one still applies.
    let mut w = store.writer("resume", None).unwrap();
    assert_eq!(w.status().offset, 11);
    assert_eq!(w.status().expected, Some(digest));
    assert_eq!(w.status().started_at, status.started_at);
    w.write_at(11, &data[11..]).unwrap();
    w.commit(data.len() as u64, digest).unwrap();
    assert_eq!(
        store
            .reader_at(&digest)
            .unwrap()
            .read_range(0, 100)
            .unwrap(),
        data
    );

    // A different expectation for the same ref is refused.
    let mut w = store.writer("again", Some((digest, 3))).unwrap();
    w.write(b"abc").unwrap();
    drop(w);
    let err = store.writer("again", Some((digest, 4))).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(Invalid::ExpectedChanged { .. })),
        "{err}"
    );
}

#[test]
fn resume_rehashes_the_data_on_disk() {
    let (_dir, store) = store();
    let mut w = store.writer("rehash", None).unwrap();
    w.write(b"abc").unwrap();
    drop(w);
    let w = store.writer("rehash", None).unwrap();
    assert_eq!(w.digest(), Digest::of(b"abc"));
    drop(w);

    // What is on disk is the truth: bytes changed behind the store's back (a torn write
    // before a crash) are hashed as they are, so the commit catches them.
    fs::write(store.ingest_dir("rehash").join("data"), b"abX").unwrap();
    let mut w = store.writer("rehash", None).unwrap();
    assert_eq!(w.offset(), 3);
    w.write(b"def").unwrap();
    let err = w.commit(6, Digest::of(b"abcdef")).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(Invalid::DigestMismatch { .. })),
        "{err}"
    );
    assert!(blob_names(&store).is_empty());
}

#[test]
fn gaps_and_overlaps_are_refused() {
    let (_dir, store) = store();
    let mut w = store.writer("gap", None).unwrap();
    w.write(b"0123").unwrap();
    for offset in [5, 2, 0] {
        let err = w.write_at(offset, b"x").unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                Error::InvalidArgument(Invalid::Offset { current: 4, .. })
            ),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("offset {offset}")) && msg.contains("at offset 4"),
            "{msg}"
        );
    }
    assert_eq!(w.offset(), 4);
    w.write_at(4, b"45").unwrap();
    w.commit(6, Digest::of(b"012345")).unwrap();
}

#[test]
fn a_second_writer_of_the_same_ref_is_locked_out() {
    let (_dir, store) = store();
    let mut w = store.writer("busy", None).unwrap();
    w.write(b"x").unwrap();
    let err = store.writer("busy", None).unwrap_err();
    assert!(
        matches!(&err, Error::Locked { reference } if reference == "busy"),
        "{err}"
    );
    assert!(matches!(store.abort("busy"), Err(Error::Locked { .. })));
    drop(w);
    // The lock goes with the writer: nothing stale is left behind.
    assert_eq!(store.writer("busy", None).unwrap().offset(), 1);
}

#[test]
fn abort_discards_an_ingest() {
    let (_dir, store) = store();
    let mut w = store.writer("gone", None).unwrap();
    w.write(b"partial").unwrap();
    drop(w);
    store.abort("gone").unwrap();
    assert!(matches!(store.status("gone"), Err(Error::NotFound { .. })));
    assert!(matches!(store.abort("gone"), Err(Error::NotFound { .. })));
    assert!(store.list_statuses().unwrap().is_empty());
    // The ref starts over.
    assert_eq!(store.writer("gone", None).unwrap().offset(), 0);
}

#[test]
fn delete_removes_a_blob() {
    let (_dir, store) = store();
    let digest = put(&store, "d", b"delete me").unwrap();
    store.delete(&digest).unwrap();
    assert!(matches!(store.info(&digest), Err(Error::NotFound { .. })));
    assert!(matches!(
        store.reader_at(&digest),
        Err(Error::NotFound { .. })
    ));
    let err = store.delete(&digest).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn committing_existing_content_reports_already_exists() {
    let (_dir, store) = store();
    let digest = put(&store, "one", b"same").unwrap();
    let err = put(&store, "two", b"same").unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists { digest: d } if d == digest),
        "{err}"
    );
    // The losing ingest is discarded, the blob untouched.
    assert!(store.list_statuses().unwrap().is_empty());
    assert_eq!(blob_names(&store), vec![digest.encoded()]);
    assert_eq!(
        store.reader_at(&digest).unwrap().read_range(0, 10).unwrap(),
        b"same"
    );
}

#[test]
fn two_threads_committing_the_same_digest_end_with_one_blob() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&data);
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|i| {
            let (store, barrier, data) = (Arc::clone(&store), Arc::clone(&barrier), data.clone());
            std::thread::spawn(move || {
                let mut w = store.writer(&format!("thread-{i}"), None).unwrap();
                for chunk in data.chunks(10_000) {
                    w.write(chunk).unwrap();
                }
                barrier.wait();
                w.commit(data.len() as u64, digest)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for r in &results {
        assert!(
            matches!(r, Ok(_) | Err(Error::AlreadyExists { .. })),
            "{r:?}"
        );
    }
    assert!(results.iter().any(Result::is_ok), "{results:?}");
    assert_eq!(blob_names(&store), vec![digest.encoded()]);
    assert!(store.list_statuses().unwrap().is_empty());
    assert_eq!(
        store
            .reader_at(&digest)
            .unwrap()
            .read_range(0, u64::MAX)
            .unwrap(),
        data
    );
}

#[test]
fn open_removes_leftover_temp_files_and_keeps_ingests() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    assert!(store.cleaned().is_empty());
    let digest = put(&store, "kept-blob", b"blob").unwrap();
    let mut w = store.writer("kept-ingest", None).unwrap();
    w.write(b"in progress").unwrap();
    drop(w);
    let blobs = store.root().join("blobs/sha256");
    fs::write(blobs.join(".tmp-123"), b"half a blob").unwrap();
    fs::create_dir(blobs.join(".tmp-dir")).unwrap();
    drop(store);

    let store = LocalStore::open(dir.path()).unwrap();
    assert_eq!(
        store.cleaned(),
        [blobs.join(".tmp-123"), blobs.join(".tmp-dir")]
    );
    assert_eq!(blob_names(&store), vec![digest.encoded()]);
    assert_eq!(store.status("kept-ingest").unwrap().offset, 11);
}

#[test]
fn blobs_are_read_only() {
    let (_dir, store) = store();
    let digest = put(&store, "ro", b"immutable").unwrap();
    let mode = fs::metadata(store.blob_path(&digest))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o444);
}

#[test]
fn list_is_sorted_and_skips_non_blobs() {
    let (_dir, store) = store();
    let mut digests: Vec<Digest> = ["a", "b", "c"]
        .iter()
        .map(|s| put(&store, s, s.as_bytes()).unwrap())
        .collect();
    digests.sort();
    fs::write(store.root().join("blobs/sha256/not-a-digest"), b"").unwrap();
    let listed: Vec<Digest> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert_eq!(listed, digests);
}

#[test]
fn refs_are_validated_and_hashed_into_directory_names() {
    let (_dir, store) = store();
    assert!(matches!(
        store.writer("", None),
        Err(Error::InvalidArgument(Invalid::EmptyRef))
    ));
    let reference = "layer/with/slashes/../and-dots";
    let mut w = store.writer(reference, None).unwrap();
    w.write(b"x").unwrap();
    drop(w);
    assert_eq!(store.list_statuses().unwrap()[0].reference, reference);
    let dir = store.ingest_dir(reference);
    assert_eq!(dir.parent().unwrap(), store.root().join("ingest"));
    assert_eq!(fs::read_to_string(dir.join("ref")).unwrap(), reference);
}
