//! The root image: `mkfs.erofs` over a staged tree, with every source of variation pinned —
//! timestamps (`-T`), owners (`--all-root`), the UUID (`-U`, derived from the inputs), and
//! no host xattrs (`-x -1`). erofs-utils sorts directory entries itself, and the staged tree
//! is created in sorted order, so the image depends only on the tree's contents.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::definition::RootCompression;
use crate::fsutil::{self, FsError};
use crate::tree::ListingEntry;

/// `mkfs.erofs` failed.
#[derive(Debug, thiserror::Error)]
pub enum ErofsError {
    /// Running the tool failed.
    #[error("building the erofs root image failed")]
    Mkfs(#[source] FsError),
}

/// A UUID (RFC 9562 version 8, "custom") derived from the tree listing, the timestamp and the
/// compression, so the same inputs always give the same file-system UUID.
pub fn derive_uuid(listing: &[ListingEntry], epoch: u32, compression: RootCompression) -> String {
    let mut h = Sha256::new();
    h.update(b"berth-image erofs uuid v1\0");
    h.update(epoch.to_le_bytes());
    h.update(compression.to_string().as_bytes());
    for entry in listing {
        // serde_json of a plain struct cannot fail.
        h.update(serde_json::to_vec(entry).unwrap_or_default());
        h.update(b"\n");
    }
    let mut b: [u8; 16] = h.finalize()[..16].try_into().unwrap_or([0; 16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC variant
    let hex = fsutil::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Builds `image` from the staged directory `source`.
pub fn mkfs(
    source: &Path,
    image: &Path,
    compression: RootCompression,
    epoch: u32,
    uuid: &str,
) -> Result<(), ErofsError> {
    let mut cmd = Command::new("mkfs.erofs");
    cmd.arg("--quiet")
        .arg(format!("-T{epoch}"))
        .arg("--all-root")
        .arg(format!("-U{uuid}"))
        .arg("-x-1");
    if compression == RootCompression::Lz4hc {
        // Level 12 (the maximum) costs build time only; decompression speed is the same.
        cmd.arg("-zlz4hc,12");
    }
    cmd.arg(image).arg(source);
    fsutil::run(&mut cmd).map_err(ErofsError::Mkfs)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Tree;

    fn tree(reverse: bool) -> Tree {
        let mut names: Vec<String> = (0..40).map(|i| format!("usr/share/f{i:02}")).collect();
        if reverse {
            names.reverse();
        }
        let mut t = Tree::new();
        for n in &names {
            let idx: usize = n[n.len() - 2..].parse().unwrap();
            t.bytes(n, 0o644, vec![b'a' + (idx % 26) as u8; 3000 + idx * 100])
                .unwrap();
        }
        t.symlink("lib", "usr/lib").unwrap();
        t.dir("tmp", 0o1777).unwrap();
        t
    }

    fn image(t: &Tree, epoch: u32, compression: RootCompression) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("stage");
        std::fs::create_dir(&stage).unwrap();
        t.stage(&stage).unwrap();
        let out = dir.path().join("root.erofs");
        let uuid = derive_uuid(&t.listing().unwrap(), epoch, compression);
        mkfs(&stage, &out, compression, epoch, &uuid)
            .expect("mkfs.erofs is needed for this test (apt-get install erofs-utils)");
        std::fs::read(out).unwrap()
    }

    #[test]
    fn uuid_is_stable_and_input_dependent() {
        let listing = tree(false).listing().unwrap();
        let a = derive_uuid(&listing, 1, RootCompression::Lz4hc);
        assert_eq!(a, derive_uuid(&listing, 1, RootCompression::Lz4hc));
        assert_ne!(a, derive_uuid(&listing, 2, RootCompression::Lz4hc));
        assert_ne!(a, derive_uuid(&listing, 1, RootCompression::None));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn images_are_reproducible() {
        for compression in [RootCompression::Lz4hc, RootCompression::None] {
            let one = image(&tree(false), 1_700_000_000, compression);
            // Staged in a different temp dir, at a different time, entries created in the
            // same sorted order (the Tree sorts), must give the same bytes.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            let two = image(&tree(true), 1_700_000_000, compression);
            assert!(
                one == two,
                "{compression} erofs image differs between builds"
            );
            let other = image(&tree(false), 1_600_000_000, compression);
            assert!(
                one != other,
                "SOURCE_DATE_EPOCH must reach the {compression} image"
            );
        }
    }
}
