//! `Tasks.Logs`: a task's output from the shim's size-capped log (`log`, rotated once to
//! `log.1`, see [`super::shim::LOG_CAP`]), like `docker logs` / `nerdctl logs`: everything
//! stored (or the last N lines), then with `follow` what comes next until the task's init
//! exits. containerd has no equivalent (its shims hand output to the client's FIFOs only).
//!
//! stdout and stderr are one interleaved stream here: the shim writes both into the same
//! file, without per-line stream tags or timestamps. The files live in the task's directory,
//! so the output goes with `tasks rm`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::Error;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// Polls a follower keeps reading after the init's exit was recorded: the shim's copiers may
/// still be draining the pipes of the last writers.
const DRAIN_POLLS: u32 = 3;

/// The last `tail` lines of `data` (`None`: all of it). A final line without a newline counts.
pub fn last_lines(data: &[u8], tail: Option<usize>) -> &[u8] {
    let Some(n) = tail else { return data };
    if n == 0 {
        return &data[data.len()..];
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &data[i + 1..];
            }
        }
    }
    data
}

/// What is stored: `log.1` then `log`, the last `tail` lines of it; and the open current
/// file positioned at its end, for following.
pub fn stored(dir: &Path, tail: Option<usize>) -> Result<(Vec<u8>, Option<File>), Error> {
    let mut data = std::fs::read(dir.join("log.1")).unwrap_or_default();
    let current = match File::open(dir.join("log")) {
        Ok(mut f) => {
            f.read_to_end(&mut data).map_err(|source| Error::Io {
                what: format!("read {}", dir.join("log").display()),
                source,
            })?;
            Some(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(Error::Io {
                what: format!("open {}", dir.join("log").display()),
                source,
            })
        }
    };
    let out = last_lines(&data, tail).to_vec();
    Ok((out, current))
}

/// Follows the log from `current` on: calls `send` with each new piece (across a rotation:
/// the rest of the renamed file, then the new one from its start) until the task's init
/// exited and the output drained, the task's directory is gone, or `send` fails (the client
/// left).
pub async fn follow<F, Fut>(dir: &Path, mut current: Option<File>, mut send: F) -> Result<(), Error>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let path = dir.join("log");
    let mut after_exit = 0;
    loop {
        let mut buf = Vec::new();
        if let Some(f) = current.as_mut() {
            let _ = f.read_to_end(&mut buf);
        }
        // Rotated (or created) since: finish the old file, then read the new one.
        let inode = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        let ours = current
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| (m.dev(), m.ino()));
        if inode.is_some() && inode != ours {
            if let Some(f) = current.as_mut() {
                let _ = f.read_to_end(&mut buf);
            }
            current = File::open(&path).ok();
            if let Some(f) = current.as_mut() {
                let _ = f.seek(SeekFrom::Start(0));
                let _ = f.read_to_end(&mut buf);
            }
        }
        if !buf.is_empty() && !send(buf).await {
            return Ok(());
        }
        if !dir.exists() {
            return Ok(());
        }
        if super::shim::exits::read_exit(dir).is_some() {
            after_exit += 1;
            if after_exit > DRAIN_POLLS {
                return Ok(());
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", Some(2)), b"b\nc");
        assert_eq!(last_lines(b"a\nb\n", Some(5)), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", Some(0)), b"");
        assert_eq!(last_lines(b"a\nb\n", None), b"a\nb\n");
    }

    #[test]
    fn stored_output_spans_the_rotation() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("log.1"), "one\ntwo\n").unwrap();
        std::fs::write(d.path().join("log"), "three\n").unwrap();
        let (all, f) = stored(d.path(), None).unwrap();
        assert_eq!(all, b"one\ntwo\nthree\n");
        assert!(f.is_some());
        assert_eq!(stored(d.path(), Some(2)).unwrap().0, b"two\nthree\n");
    }

    #[tokio::test]
    async fn follow_crosses_a_rotation_and_ends_after_the_exit() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_owned();
        std::fs::write(dir.join("log"), "a\n").unwrap();
        let (_, f) = stored(&dir, None).unwrap();
        let writer = {
            let dir = dir.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                use std::io::Write;
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(dir.join("log"))
                    .unwrap()
                    .write_all(b"b\n")
                    .unwrap();
                std::fs::rename(dir.join("log"), dir.join("log.1")).unwrap();
                std::fs::write(dir.join("log"), "c\n").unwrap();
                tokio::time::sleep(Duration::from_millis(150)).await;
                super::super::shim::exits::write_exit(&dir, &Default::default()).unwrap();
            })
        };
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let g = got.clone();
        tokio::time::timeout(
            Duration::from_secs(10),
            follow(&dir, f, move |b| {
                g.lock().unwrap().extend(b);
                async { true }
            }),
        )
        .await
        .expect("follow ends after the exit")
        .unwrap();
        writer.await.unwrap();
        assert_eq!(&*got.lock().unwrap(), b"b\nc\n");
    }
}
