//! Where a shim listens: `<state>/s/<hash>`, a short path named by a hash of the namespace and
//! container id, as containerd does (`/run/containerd/s/<sha256>`).
//!
//! A unix socket path must fit `sun_path` (108 bytes with its NUL). The socket used to be
//! `<state>/shims/<ns>/<id>/shim.sock`, which a CRI container id (64 hex digits) in the
//! `k8s.io` namespace pushes past the limit even under `/run/berth` ("path must be shorter
//! than SUN_LEN"). The hash is the first 32 hex digits (128 bits) of SHA-256 over
//! `<ns>/<id>`: collisions are out of reach, and a 32-byte name leaves about 70 bytes for the
//! state directory (a test's temporary one included), where 64 digits would leave 38.
//!
//! Shims started before this layout listen on the legacy path in their bundle
//! ([`legacy`]); re-adoption tries both, so an engine upgrade keeps running containers.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The directory of shim sockets under berthd's state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("s")
}

/// The socket of the shim of container `id` in namespace `ns`.
pub fn path(state_dir: &Path, ns: &str, id: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{ns}/{id}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    dir(state_dir).join(hex)
}

/// The socket of a shim started by a berthd before hashed names: in its bundle directory.
pub fn legacy(bundle: &Path) -> PathBuf {
    bundle.join("shim.sock")
}

/// The socket to reach the shim of a bundle found at start: the hashed path when it exists,
/// else the legacy one (a shim of an older berthd), else the hashed path (a dead shim; the
/// connection fails either way).
pub fn existing(state_dir: &Path, ns: &str, id: &str, bundle: &Path) -> PathBuf {
    let p = path(state_dir, ns, id);
    if !p.exists() && legacy(bundle).exists() {
        return legacy(bundle);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cri_id_fits_sun_path() {
        let id = "f".repeat(64);
        let p = path(Path::new("/run/berth"), "k8s.io", &id);
        assert_eq!(p.file_name().unwrap().len(), 32);
        assert!(p.as_os_str().len() < 50, "{}", p.display());
        assert_ne!(
            p,
            path(Path::new("/run/berth"), "k8s.i", &format!("o/{id}"))
        );
        assert_ne!(p, path(Path::new("/run/berth"), "default", &id));
        // Stable: re-adoption after a restart computes the same name.
        assert_eq!(p, path(Path::new("/run/berth"), "k8s.io", &id));
    }

    #[test]
    fn legacy_shims_are_still_found() {
        let d = tempfile::tempdir().unwrap();
        let bundle = d.path().join("shims/default/c1");
        std::fs::create_dir_all(&bundle).unwrap();
        assert_eq!(
            existing(d.path(), "default", "c1", &bundle),
            path(d.path(), "default", "c1")
        );
        std::fs::write(legacy(&bundle), b"").unwrap();
        assert_eq!(
            existing(d.path(), "default", "c1", &bundle),
            legacy(&bundle)
        );
        std::fs::create_dir_all(dir(d.path())).unwrap();
        std::fs::write(path(d.path(), "default", "c1"), b"").unwrap();
        assert_eq!(
            existing(d.path(), "default", "c1", &bundle),
            path(d.path(), "default", "c1")
        );
    }
}
