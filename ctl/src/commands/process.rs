//! What `run` and `tasks exec` share: a process's stdio through FIFOs that the shim opens —
//! created in a private temporary directory, copied to and from ours by threads — and
//! generated ids.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// FIFOs of one process, in a private directory removed on drop.
pub(super) struct Fifos {
    dir: PathBuf,
}

impl Fifos {
    /// Creates `stdin`, `stdout` and `stderr` FIFOs in a new 0700 directory named after us
    /// and `tag`.
    pub(super) fn create(tag: &str) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(format!("berthctl-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).map_err(Error::io(format!("create {}", dir.display())))?;
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        for n in ["stdin", "stdout", "stderr"] {
            let path = dir.join(n);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
                |e| Error::Io {
                    what: format!("mkfifo {}", path.display()),
                    source: e.into(),
                },
            )?;
        }
        Ok(Self { dir })
    }

    /// The path of FIFO `n`, for the request that names it.
    pub(super) fn path(&self, n: &str) -> String {
        self.dir.join(n).display().to_string()
    }

    /// Copies our stdin into the stdin FIFO and the stdout/stderr FIFOs to ours, in threads.
    /// Returns the output copiers, which end when the shim closes the FIFOs.
    pub(super) fn attach(&self) -> Copiers {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let out = |p: PathBuf, to_err: bool| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                if let Ok(mut f) = std::fs::File::open(&p) {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = f.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let r = if to_err {
                            std::io::stderr().write_all(&buf[..n])
                        } else {
                            let mut o = std::io::stdout();
                            o.write_all(&buf[..n]).and_then(|()| o.flush())
                        };
                        if r.is_err() {
                            break;
                        }
                    }
                }
                let _ = tx.send(());
            });
        };
        out(self.dir.join("stdout"), false);
        out(self.dir.join("stderr"), true);
        let p = self.dir.join("stdin");
        std::thread::spawn(move || {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                let _ = std::io::copy(&mut std::io::stdin(), &mut f);
            }
        });
        Copiers { done: rx, left: 2 }
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The output copiers of one process: each reports on `done` when its FIFO reached its end.
pub(super) struct Copiers {
    done: tokio::sync::mpsc::UnboundedReceiver<()>,
    left: usize,
}

impl Copiers {
    /// Waits until the output ends: the shim closes the FIFOs once the process and anything
    /// holding its stdio are gone. Bounded (2 s), so a daemonized grandchild that keeps the
    /// stdio open cannot hold us forever.
    pub(super) async fn finish(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while self.left > 0 && self.done.recv().await.is_some() {
                self.left -= 1;
            }
        })
        .await;
    }
}

/// A fresh id for a container or an exec: the time and our pid.
pub(super) fn gen_id() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("c{:x}{:x}", n & 0xffff_ffff_ffff, std::process::id())
}
