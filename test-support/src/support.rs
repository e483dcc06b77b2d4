//! OCI archives built in memory, and berthd/berthctl as child processes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use sha2::{Digest as _, Sha256};

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn sha(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

pub fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn manifest(layers: &[&[u8]], blobs: &mut BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {}
    })
    .to_string()
    .into_bytes();
    let mut layer_descs = Vec::new();
    for l in layers {
        let gz = gzip(l);
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha(&gz), "size": gz.len()
        }));
        blobs.insert(sha(&gz), gz);
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": layer_descs
    })
    .to_string()
    .into_bytes();
    blobs.insert(sha(&config), config);
    blobs.insert(sha(&m), m.clone());
    m
}

pub fn archive(images: &[(&str, Vec<u8>)], blobs: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": images.iter().map(|(name, m)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(m), "size": m.len(),
            "annotations": {"io.containerd.image.name": name}
        })).collect::<Vec<_>>()
    })
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", index.as_bytes());
    for (digest, data) in blobs {
        add(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            data,
        );
    }
    b.into_inner().unwrap()
}

/// berthd as a child process, stopped with SIGTERM (killed if it does not exit).
pub struct Berthd {
    pub child: std::process::Child,
    pub socket: std::path::PathBuf,
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..500 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn berthctl(socket: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::bin("berthctl"))
        .arg("--address")
        .arg(socket)
        .args(args)
        .env_remove("BERTH_NAMESPACE")
        .output()
        .unwrap()
}

pub fn berthctl_ok(socket: &Path, args: &[&str]) -> String {
    let out = berthctl(socket, args);
    assert!(
        out.status.success(),
        "berthctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn start_berthd(dir: &Path) -> Berthd {
    start_berthd_with(dir, &[])
}

/// berthd on `dir` with extra environment (e.g. `BERTH_FAILPOINT`).
pub fn start_berthd_with(dir: &Path, env: &[(&str, &str)]) -> Berthd {
    match try_start_berthd_with(dir, env) {
        Ok(d) => d,
        Err(status) => panic!("berthd exited early: {status}"),
    }
}

/// Like [`start_berthd_with`], but a berthd that exits before answering is returned as its
/// exit status (a failpoint hit during start-up).
pub fn try_start_berthd_with(
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<Berthd, std::process::ExitStatus> {
    try_start_berthd_config(dir, env, "", None)
}

/// berthd on `dir` with `extra` appended to its berthd.toml, its log (stderr) going to `log`
/// (appended) or nowhere.
pub fn try_start_berthd_config(
    dir: &Path,
    env: &[(&str, &str)],
    extra: &str,
    log: Option<&Path>,
) -> Result<Berthd, std::process::ExitStatus> {
    let cfg = write_berthd_config(dir, extra);
    let stderr = match log {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .into(),
        None => std::process::Stdio::null(),
    };
    spawn_berthd(dir, &cfg, env, stderr)
}

/// Writes `<dir>/berthd.toml`: root, state and socket under `dir`, then `extra`.
pub fn write_berthd_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("berthd.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[ttrpc]\naddress = \"{0}/state/berthd.sock\"\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    cfg
}

/// Starts berthd with `cfg` (socket at `<dir>/state/berthd.sock`) and waits until it answers;
/// a berthd that exits first is returned as its exit status.
pub fn spawn_berthd(
    dir: &Path,
    cfg: &Path,
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> Result<Berthd, std::process::ExitStatus> {
    let child = std::process::Command::new(crate::bin("berthd"))
        .arg("--config")
        .arg(cfg)
        .envs(env.iter().copied())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut d = Berthd {
        child,
        socket: dir.join("state/berthd.sock"),
    };
    // Hang guard only.
    for _ in 0..1000 {
        if berthctl(&d.socket, &["version"]).status.success() {
            return Ok(d);
        }
        if let Some(status) = d.child.try_wait().unwrap() {
            return Err(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("berthd did not answer within 20 s");
}

/// [`spawn_berthd`] with its stderr piped (read by [`Berthd::stop`]); panics if it exits.
pub fn start_berthd_piped(dir: &Path, cfg: &Path) -> Berthd {
    spawn_berthd(dir, cfg, &[], std::process::Stdio::piped())
        .unwrap_or_else(|status| panic!("berthd exited early: {status}"))
}

impl Berthd {
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM; asserts a clean exit and returns what it wrote to a piped stderr.
    pub fn stop(&mut self) -> String {
        use std::io::Read;
        nix::sys::signal::kill(self.pid(), nix::sys::signal::Signal::SIGTERM).unwrap();
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut log).unwrap();
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "berthd exit: {status:?}\n{log}");
        log
    }
}

/// Debian's `busybox-static`, the one binary of the test images.
pub const BUSYBOX: &str = "/bin/busybox";

/// A layer with busybox, its applet links and minimal /etc files.
pub fn busybox_layer() -> Vec<u8> {
    let bb = std::fs::read(BUSYBOX).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, &[][..]).unwrap();
    };
    for d in ["bin", "etc", "tmp", "root", "home", "home/app"] {
        dir(&mut b, d);
    }
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, name, data).unwrap();
    };
    file(&mut b, "bin/busybox", &bb, 0o755);
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        0o644,
    );
    file(
        &mut b,
        "etc/group",
        b"root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
        0o644,
    );
    file(&mut b, "etc/hostfile", b"a file\n", 0o644);
    for applet in [
        "sh", "echo", "cat", "ls", "id", "sleep", "true", "false", "hostname", "kill", "ps",
        "mount", "grep", "wc", "readlink", "touch", "stat", "env",
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(1_700_000_000);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI archive of one image, "busybox", made of [`busybox_layer`].
pub fn busybox_archive() -> Vec<u8> {
    let mut blobs = BTreeMap::new();
    let layer = busybox_layer();
    let m = manifest(&[&layer], &mut blobs);
    archive(&[("busybox", m)], &blobs)
}
