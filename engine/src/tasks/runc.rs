//! The external runtime handler: the shim drives an OCI runtime binary with runc's command
//! line (`runc`, or any runtime that speaks it) on the same bundle the built-in executor uses.
//!
//! `create` runs with the container's stdio as its own (runc's "pass-through" mode: the
//! container's init inherits the pipes the shim reads into the log), so the output path is the
//! built-in one. `create` and `exec --detach` leave their process behind and exit; the shim is
//! the child subreaper, so those processes become its children and their exits reach its
//! reaper like the built-in executor's. The runtime's state lives in `runc/` (its `--root`) in
//! the shim's directory, its log in `runc.log`.
//!
//! Every invocation after the shim's reaper started is spawned through the shim's helper
//! registry (see `shim::run_helper`) so that the reaper, which collects every child, hands the
//! runtime's exit status back instead of swallowing it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Error;

/// One container under an external runtime.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    /// The shim's directory (bundle).
    pub dir: PathBuf,
    pub id: String,
}

impl Runc {
    /// The runtime's state directory (`--root`).
    pub fn root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("runc.log")
    }

    /// `BINARY --root … --log … --log-format json` (the global options).
    fn base(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(self.root())
            .arg("--log")
            .arg(self.log())
            .args(["--log-format", "json"]);
        c
    }

    /// The global options, then `args` and the container id, stdout discarded, stderr piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.base();
        c.args(args)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// `exec --detach --pid-file PID --process PROCESS [--console-socket S] ID`; the caller
    /// sets the stdio (the process inherits it, or with a console socket gets a terminal).
    pub fn exec_command(&self, process: &Path, pid_file: &Path, console: Option<&Path>) -> Command {
        let mut c = self.base();
        c.args(["exec", "--detach", "--pid-file"])
            .arg(pid_file)
            .arg("--process")
            .arg(process);
        if let Some(s) = console {
            c.arg("--console-socket").arg(s);
        }
        c.arg(&self.id);
        c
    }

    /// The size of the runtime's log now (errors of the next call are read from there on).
    pub fn log_offset(&self) -> u64 {
        std::fs::metadata(self.log()).map_or(0, |m| m.len())
    }

    /// The error messages the runtime logged after `offset`, or `fallback`.
    pub fn errors_since(&self, offset: u64, fallback: &str) -> String {
        let text = std::fs::read(self.log()).unwrap_or_default();
        let tail = text.get(offset as usize..).unwrap_or_default();
        let msgs: Vec<String> = String::from_utf8_lossy(tail)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
            .filter_map(|v| v["msg"].as_str().map(str::to_owned))
            .collect();
        if msgs.is_empty() {
            fallback.trim().to_owned()
        } else {
            msgs.join("; ")
        }
    }

    /// `create` with the init's stdio (or, with `console`, a terminal whose master goes to
    /// that socket), before the shim's reaper runs (so a plain wait is safe). Returns the
    /// init's pid.
    pub fn create(
        &self,
        stdin: impl Into<Stdio>,
        stdout: impl Into<Stdio>,
        stderr: impl Into<Stdio>,
        console: Option<&Path>,
    ) -> Result<u32, Error> {
        std::fs::create_dir_all(self.root()).map_err(|source| Error::Io {
            what: format!("create {}", self.root().display()),
            source,
        })?;
        let pid_file = self.dir.join("init.pid");
        let offset = self.log_offset();
        let mut cmd = self.base();
        cmd.arg("create")
            .arg("--bundle")
            .arg(&self.dir)
            .arg("--pid-file")
            .arg(&pid_file);
        if let Some(s) = console {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(&self.id).stdin(stdin).stdout(stdout).stderr(stderr);
        let status = cmd.status().map_err(|source| Error::Io {
            what: format!("run {} create", self.binary.display()),
            source,
        })?;
        if !status.success() {
            return Err(Error::Executor(format!(
                "{} create: {}",
                self.binary.display(),
                self.errors_since(offset, &status.to_string())
            )));
        }
        read_pid(&pid_file)
    }
}

/// Reads a runtime's `--pid-file`.
pub fn read_pid(path: &Path) -> Result<u32, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        what: format!("read {}", path.display()),
        source,
    })?;
    text.trim()
        .parse()
        .map_err(|_| Error::Executor(format!("{}: not a pid: {text:?}", path.display())))
}

/// The process of an exec under an external runtime (and of a built-in exec with a
/// terminal): the container's own process (user, capabilities, rlimits, no_new_privs,
/// AppArmor/SELinux labels) with the exec's arguments, its environment added to the
/// container's, its cwd when given, and a terminal or not — the same as the built-in
/// executor's exec, which keeps the container's user and seccomp profile.
pub fn exec_process(
    spec: &oci_spec::runtime::Spec,
    args: &[String],
    env: &[String],
    cwd: &str,
    terminal: bool,
) -> Result<serde_json::Value, Error> {
    let mut p = serde_json::to_value(spec.process().clone().unwrap_or_default())
        .map_err(|e| Error::InvalidSpec(format!("process: {e}")))?;
    let mut merged: Vec<String> = p["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for e in env {
        let key = e.split('=').next().unwrap_or_default();
        merged.retain(|m| m.split('=').next().unwrap_or_default() != key);
        merged.push(e.clone());
    }
    p["args"] = serde_json::json!(args);
    p["env"] = serde_json::json!(merged);
    p["terminal"] = serde_json::json!(terminal);
    if !cwd.is_empty() {
        p["cwd"] = serde_json::json!(cwd);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_process_keeps_the_container_identity() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "env": ["PATH=/bin", "A=1"],
                        "user": {"uid": 1000, "gid": 1000}, "noNewPrivileges": true}
        }))
        .unwrap();
        let p = exec_process(&spec, &["id".into()], &["A=2".into()], "/tmp", false).unwrap();
        assert_eq!(p["args"], serde_json::json!(["id"]));
        assert_eq!(p["env"], serde_json::json!(["PATH=/bin", "A=2"]));
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["noNewPrivileges"], true);
    }

    #[test]
    fn runtime_errors_come_from_its_json_log() {
        let d = tempfile::tempdir().unwrap();
        let r = Runc {
            binary: "/usr/sbin/runc".into(),
            dir: d.path().into(),
            id: "c".into(),
        };
        std::fs::write(
            d.path().join("runc.log"),
            "{\"level\":\"error\",\"msg\":\"old\"}\n",
        )
        .unwrap();
        let off = r.log_offset();
        assert_eq!(r.errors_since(off, "exit status 1"), "exit status 1");
        let mut t = std::fs::read_to_string(d.path().join("runc.log")).unwrap();
        t.push_str(
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"no such file\"}\n",
        );
        std::fs::write(d.path().join("runc.log"), t).unwrap();
        assert_eq!(r.errors_since(off, ""), "no such file");
    }
}
