//! The demo container image preloaded into berth images: Debian's `busybox-static` as a
//! one-layer OCI image archive, built from the package at image-build time (no registry).
//!
//! A newcomer who boots the default image finds `localhost/berth/busybox:latest` in
//! `berthctl images ls` with the network off (berthd imports `/usr/share/berth/images/*.tar`
//! at start, see engine/src/preload.rs), and tests have a small image with a shell.
//!
//! The archive is reproducible: entries sorted, owners 0:0, every mtime the build's
//! `SOURCE_DATE_EPOCH`, gzip without a timestamp. The package is fetched with
//! `apt-get download` and cached by version under `<cache>/debs/`, like the kernel.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::deb::{self, DebError};
use crate::fsutil;

/// Debian package carrying the static busybox binary.
pub const PACKAGE: &str = "busybox-static";
/// Name of the demo image (an `io.containerd.image.name` annotation in the archive).
pub const IMAGE_NAME: &str = berth_layout::paths::DEMO_IMAGE;

/// File name of the archive in the root image's preload directory.
pub fn archive_name() -> &'static str {
    let path = berth_layout::paths::DEMO_ARCHIVE;
    path.rsplit('/').next().unwrap_or(path)
}

/// busybox applets linked in `/bin`: enough for a shell, scripts and the tests' checks.
const APPLETS: &[&str] = &[
    "cat", "cp", "date", "dd", "echo", "env", "false", "grep", "head", "hostname", "id", "kill",
    "ls", "mkdir", "mount", "ps", "rm", "sed", "sh", "sleep", "tail", "test", "top", "touch",
    "true", "uname", "wc",
];

/// Building the demo image failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Resolving, downloading or unpacking the package failed.
    #[error("demo image: {PACKAGE}: {0}")]
    Package(String),
    /// A command failed.
    #[error("demo image: {0}")]
    Command(#[from] fsutil::FsError),
    /// A file could not be read or written.
    #[error("demo image: cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DemoError + 'a {
    move |source| DemoError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The demo archive and the package version it came from.
pub struct DemoImage {
    /// The OCI layout archive (tar).
    pub archive: Vec<u8>,
    /// `busybox-static` version used.
    pub version: String,
}

/// Fetches (or reuses from `cache_dir`) busybox-static and builds the archive.
pub fn build(cache_dir: &Path, epoch: u32) -> Result<DemoImage, DemoError> {
    let (busybox, version) = busybox_binary(cache_dir)?;
    let binary = fs::read(&busybox).map_err(io_err("read", &busybox))?;
    Ok(DemoImage {
        archive: archive(&binary, &version, epoch),
        version,
    })
}

/// The cached busybox binary for the candidate version, downloading it when missing. With no
/// apt lists (offline build host) the newest cached version is used.
fn busybox_binary(cache_dir: &Path) -> Result<(PathBuf, String), DemoError> {
    let debs = cache_dir.join("debs");
    let version = match candidate_version() {
        Some(v) => v,
        None => newest_cached(&debs).ok_or_else(|| {
            DemoError::Package(
                "no candidate version in `apt-cache policy` and nothing cached".into(),
            )
        })?,
    };
    let entry = debs.join(format!("{PACKAGE}_{version}"));
    let binary = entry.join("busybox");
    if binary.is_file() {
        return Ok((binary, version));
    }
    fs::create_dir_all(&debs).map_err(io_err("create", &debs))?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(&debs)
        .map_err(io_err("create a temporary directory in", &debs))?;
    let tree = tmp.path().join("tree");
    let downloaded = deb::download_and_extract(
        &[format!("{PACKAGE}={version}")],
        tmp.path(),
        &tree,
    )
    .map_err(|err| match err {
        DebError::NoDeb { .. } => DemoError::Package("no .deb after apt-get download".into()),
        DebError::Fs(e) => e.into(),
    })?;
    let deb = &downloaded[0];
    let found = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| DemoError::Package(format!("no bin/busybox in {}", deb.display())))?;
    let staged = tmp.path().join("busybox");
    fs::rename(&found, &staged).map_err(io_err("move", &found))?;
    let _ = fs::remove_dir_all(&tree);
    let _ = fs::remove_file(deb);
    match fs::rename(tmp.path(), &entry) {
        Ok(()) => {
            let _ = tmp.keep();
        }
        // A concurrent build won the race; its entry is as good as ours.
        Err(_) if binary.is_file() => {}
        Err(e) => return Err(io_err("rename into place", &entry)(e)),
    }
    Ok((binary, version))
}

fn candidate_version() -> Option<String> {
    let out = Command::new("apt-cache")
        .args(["policy", PACKAGE])
        .output()
        .ok()?;
    crate::kernel::candidate(&String::from_utf8_lossy(&out.stdout))
}

fn newest_cached(debs: &Path) -> Option<String> {
    let prefix = format!("{PACKAGE}_");
    let mut versions: Vec<String> = fs::read_dir(debs)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("busybox").is_file())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)
                .map(str::to_owned)
        })
        .collect();
    versions.sort();
    versions.pop()
}

fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// A tar writer with fixed owners and mtimes.
struct TarOut {
    builder: tar::Builder<Vec<u8>>,
    epoch: u64,
}

impl TarOut {
    fn new(epoch: u32) -> Self {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        Self {
            builder,
            epoch: u64::from(epoch),
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.epoch);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32) {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .expect("writing a tar into memory cannot fail");
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let mut h = self.header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder
            .append_data(&mut h, path, data)
            .expect("writing a tar into memory cannot fail");
    }

    fn symlink(&mut self, path: &str, target: &str) {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut h, path, target)
            .expect("writing a tar into memory cannot fail");
    }

    fn finish(self) -> Vec<u8> {
        self.builder
            .into_inner()
            .expect("writing a tar into memory cannot fail")
    }
}

/// The root file system layer: busybox, its applet links, and the account files that user
/// lookups in the container read.
fn layer(busybox: &[u8], epoch: u32) -> Vec<u8> {
    let mut t = TarOut::new(epoch);
    t.dir("bin/", 0o755);
    t.file("bin/busybox", 0o755, busybox);
    for applet in APPLETS {
        t.symlink(&format!("bin/{applet}"), "busybox");
    }
    for dir in ["dev/", "etc/", "proc/", "sys/"] {
        t.dir(dir, 0o755);
    }
    t.file(
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\n".as_slice(),
    );
    t.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
            .as_slice(),
    );
    t.dir("root/", 0o700);
    t.dir("tmp/", 0o1777);
    t.finish()
}

/// gzip without a file name or timestamp in the header (flate2's defaults), so the bytes
/// depend on the input only.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)
        .expect("compressing into memory cannot fail");
    enc.finish().expect("compressing into memory cannot fail")
}

/// RFC 3339 UTC time of a Unix timestamp (civil-from-days, Howard Hinnant's algorithm: no
/// date crate is needed for one timestamp).
fn rfc3339(epoch: u32) -> String {
    let secs = i64::from(epoch);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The OCI image layout archive holding the demo image.
pub fn archive(busybox: &[u8], version: &str, epoch: u32) -> Vec<u8> {
    let layer_tar = layer(busybox, epoch);
    let layer_gz = gzip(&layer_tar);
    let created = rfc3339(epoch);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "WorkingDir": "/",
            "Labels": {"org.opencontainers.image.description": format!("{PACKAGE} {version}, built by berth-image")}
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer_tar))]},
        "history": [{"created": created, "created_by": format!("berth-image: {PACKAGE} {version}")}]
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&config)),
            "size": config.len()
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{}", sha256_hex(&layer_gz)),
            "size": layer_gz.len()
        }]
    })
    .to_string()
    .into_bytes();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&manifest)),
            "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": IMAGE_NAME,
                "org.opencontainers.image.ref.name": "latest"
            }
        }]
    })
    .to_string()
    .into_bytes();
    let mut blobs = [
        (sha256_hex(&config), config),
        (sha256_hex(&layer_gz), layer_gz),
        (sha256_hex(&manifest), manifest),
    ];
    blobs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut t = TarOut::new(epoch);
    t.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    t.file("index.json", 0o644, &index);
    t.dir("blobs/", 0o755);
    t.dir("blobs/sha256/", 0o755);
    for (hex, data) in &blobs {
        t.file(&format!("blobs/sha256/{hex}"), 0o644, data);
    }
    t.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_822_076), "2026-11-27T23:27:56Z");
    }

    #[test]
    fn archive_is_reproducible_and_self_consistent() {
        let a = archive(b"\x7fELF fake busybox", "1:1.35.0-4+b3", 1_700_000_000);
        let b = archive(b"\x7fELF fake busybox", "1:1.35.0-4+b3", 1_700_000_000);
        assert_eq!(a, b, "two builds differ");
        assert_ne!(a, archive(b"\x7fELF fake busybox", "v", 1_700_000_001));
        // Every blob hashes to its name, and the index names the image.
        let mut tar = tar::Archive::new(a.as_slice());
        let mut names = Vec::new();
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000, "{path}");
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            if let Some(hex) = path.strip_prefix("blobs/sha256/") {
                if !hex.is_empty() {
                    assert_eq!(sha256_hex(&data), hex, "{path}");
                }
            }
            if path == "index.json" {
                let index: serde_json::Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(
                    index["manifests"][0]["annotations"]["io.containerd.image.name"],
                    IMAGE_NAME
                );
            }
            names.push(path);
        }
        assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
        assert_eq!(
            names
                .iter()
                .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 20)
                .count(),
            3
        );
    }

    #[test]
    fn layer_has_a_shell_and_accounts() {
        let l = layer(b"bb", 0);
        let mut tar = tar::Archive::new(l.as_slice());
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "bin/sh" {
                assert_eq!(
                    entry.link_name().unwrap().unwrap().to_str(),
                    Some("busybox")
                );
            }
            if path == "tmp/" {
                assert_eq!(entry.header().mode().unwrap(), 0o1777);
            }
            seen.push(path);
        }
        for want in ["bin/busybox", "bin/sh", "etc/passwd", "etc/group", "tmp/"] {
            assert!(seen.iter().any(|s| s == want), "{want} missing: {seen:?}");
        }
    }
}
