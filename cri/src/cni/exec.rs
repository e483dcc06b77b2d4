//! Running one CNI plugin binary: the CNI spec's execution protocol (configuration on stdin,
//! `CNI_*` variables in the environment, the result or an error object on stdout).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// One invocation's parameters, the `CNI_*` environment.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// `ADD`, `DEL` or `CHECK`.
    pub command: &'static str,
    /// `CNI_CONTAINERID`: the sandbox ID.
    pub container_id: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a Path,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_ARGS` (`K=V;K=V`).
    pub args: &'a str,
    /// `CNI_PATH`: where plugins (and the IPAM plugins they delegate to) are found.
    pub bin_dirs: &'a [PathBuf],
    /// Upper bound of the run.
    pub timeout: Duration,
}

/// Finds plugin `kind` in `dirs`.
pub fn find_plugin(dirs: &[PathBuf], kind: &str) -> Option<PathBuf> {
    if kind.is_empty() || kind.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file())
}

/// Runs plugin `kind` with `conf` on stdin; returns its parsed stdout (`Value::Null` when it
/// printed nothing, as DEL may). `Err` is a one-line reason, the plugin's own error message
/// when it printed one.
pub async fn invoke(kind: &str, conf: &Value, inv: &Invocation<'_>) -> Result<Value, String> {
    let bin = find_plugin(inv.bin_dirs, kind).ok_or_else(|| {
        format!(
            "plugin binary {kind:?} not found in {}",
            inv.bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        )
    })?;
    let path = std::env::join_paths(inv.bin_dirs).map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(&bin)
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let input = serde_json::to_vec(conf).expect("JSON of a JSON value");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let run = async move {
        // A plugin that exits without reading its stdin is fine: its exit status says more.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(inv.timeout, run)
        .await
        .map_err(|_| format!("{} did not finish within {:?}", bin.display(), inv.timeout))?
        .map_err(|e| format!("waiting for {}: {e}", bin.display()))?;
    let stdout: Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
    };
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let message = match &stdout {
        Value::Object(o) => {
            let msg = o.get("msg").and_then(Value::as_str).unwrap_or_default();
            let details = o.get("details").and_then(Value::as_str).unwrap_or_default();
            let code = o.get("code").and_then(Value::as_u64).unwrap_or_default();
            match (msg.is_empty(), details.is_empty()) {
                (false, false) => format!("{msg}: {details} (CNI error code {code})"),
                (false, true) => format!("{msg} (CNI error code {code})"),
                _ => stdout.to_string(),
            }
        }
        Value::Null => String::new(),
        other => other.to_string(),
    };
    Err(format!(
        "{} exited with {}{}{}",
        bin.display(),
        out.status,
        if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        },
        if stderr.is_empty() {
            String::new()
        } else {
            format!(" (stderr: {stderr})")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[tokio::test]
    async fn results_errors_and_environment() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            "echoer",
            r#"read conf; printf '{"cniVersion":"1.0.0","cmd":"%s","id":"%s","if":"%s","conf":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$conf""#,
        );
        script(
            d.path(),
            "failer",
            r#"cat >/dev/null; echo '{"code":7,"msg":"no luck","details":"really"}'; echo oops >&2; exit 1"#,
        );
        let dirs = vec![d.path().join("missing"), d.path().to_owned()];
        let inv = Invocation {
            command: "ADD",
            container_id: "abc",
            netns: Path::new("/run/netns/x"),
            ifname: "eth0",
            args: "IgnoreUnknown=1",
            bin_dirs: &dirs,
            timeout: Duration::from_secs(10),
        };
        let conf = serde_json::json!({"type": "echoer", "name": "n"});
        let v = invoke("echoer", &conf, &inv).await.unwrap();
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["if"], "eth0");
        assert_eq!(v["conf"]["name"], "n");
        let e = invoke("failer", &conf, &inv).await.unwrap_err();
        assert!(e.contains("no luck: really (CNI error code 7)"), "{e}");
        assert!(e.contains("stderr: oops"), "{e}");
        let e = invoke("nothere", &conf, &inv).await.unwrap_err();
        assert!(e.contains("not found"), "{e}");
    }
}
