//! `berth.config=https://…`: fetched by the multi-call binary's `berth-fetch` applet (crate
//! `berth-remote`), which speaks TLS with the server's certificate pinned; init runs it as a
//! child and reads the document from its standard output. Init itself links no TLS stack: its
//! binary and resident memory stay small, and the one TLS implementation of the image (rustls
//! with ring, shared with the remote API) does the work.
//!
//! The fetcher's exit status says what kind of failure it was: 75 (EX_TEMPFAIL) for what a
//! retry can fix (no connection yet, a server error status), anything else for what it cannot
//! (a pin mismatch, a bad URL, a document too large); its last line of standard error is the
//! reason.

use std::path::Path;
use std::process::{Command, Stdio};

use super::FetchError;

/// The fetcher's status for failures worth a retry.
pub const EXIT_TEMPFAIL: i32 = 75;

/// One pinned HTTPS GET of `url` through the fetcher at `program`.
pub fn get(program: &Path, url: &str, pin: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
    let out = Command::new(program)
        .args(["--pin", pin, "--max-bytes", &max_bytes.to_string(), url])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FetchError::Https {
            message: format!("cannot run {}: {e}", program.display()),
            transient: false,
        })?;
    if out.status.success() {
        if out.stdout.len() as u64 > max_bytes {
            return Err(FetchError::TooLarge { max: max_bytes });
        }
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("berth-fetch: error: ").to_string())
        .unwrap_or_else(|| format!("{} failed ({})", program.display(), out.status));
    Err(FetchError::Https {
        message,
        transient: out.status.code() == Some(EXIT_TEMPFAIL),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let p = dir.join("fetch");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn the_fetchers_output_status_and_last_line_are_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let ok = script(dir.path(), "echo \"$@\"");
        let body = get(&ok, "https://10.0.2.2/n", "sha256:ab", 100).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--pin sha256:ab --max-bytes 100 https://10.0.2.2/n\n"
        );
        let pin = script(
            dir.path(),
            "echo 'berth-fetch: error: the server certificate does not match the pin' >&2; exit 78",
        );
        match get(&pin, "https://10.0.2.2/n", "sha256:ab", 100) {
            Err(FetchError::Https { message, transient }) => {
                assert!(!transient);
                assert_eq!(message, "the server certificate does not match the pin");
            }
            other => panic!("{other:?}"),
        }
        let later = script(dir.path(), "echo 'connection refused' >&2; exit 75");
        assert!(matches!(
            get(&later, "https://10.0.2.2/n", "sha256:ab", 100),
            Err(FetchError::Https {
                transient: true,
                ..
            })
        ));
    }
}
