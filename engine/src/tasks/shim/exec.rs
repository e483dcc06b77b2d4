//! Extra processes in a running container (`Exec`, then `Start` with the exec id). They are
//! created by a short-lived helper (`berth-shim exec …`, single-threaded, because
//! libcontainer clones its caller), which reports the new pid and exits; the process is then
//! re-parented to the shim, the subreaper. With an external runtime, `runc exec --detach`
//! plays the helper's part. With a terminal, the process creates its pty inside the
//! container and the helper's console socket brings the master back ([`super::console`]).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::args::ExecArgs;
use super::executor::Executor;
use super::io::{io_err, pipe, ChildStdio, ProcIo};
use super::process::{run_helper, Shim};
use crate::tasks::{Error, ExecProcess, Status};

/// Numbers the exec console sockets (`t<n>.sock`: short, see [`super::console`]).
static CONSOLES: AtomicU32 = AtomicU32::new(0);

/// `berth-shim exec`: runs the helper and prints the new process's pid (or `error: …`) for
/// the shim; returns the exit code.
pub fn helper_main(a: &ExecArgs) -> i32 {
    match exec_helper(a) {
        Ok(pid) => {
            println!("{pid}");
            0
        }
        Err(e) => {
            println!("error: {}", berth_api::errdefs::chain(&e));
            1
        }
    }
}

/// Runs the exec helper for the created exec `r` with stdio `io` and records the started
/// process.
pub(super) fn spawn_exec(shim: &Arc<Shim>, r: ExecProcess, io: Arc<ProcIo>) -> Result<u32, Error> {
    let mut copiers = Vec::new();
    let console_name = format!("t{}.sock", CONSOLES.fetch_add(1, Ordering::Relaxed));
    let child = io.prepare(&shim.dir, &console_name, &shim.log, &mut copiers)?;
    let console_path = child.console.as_ref().map(|c| c.path().to_owned());
    let ChildStdio {
        stdin,
        stdout,
        stderr,
        console,
    } = child;
    let external = match &shim.state.lock().expect("state lock").container {
        Executor::External(x) => Some(x.clone()),
        Executor::Builtin(_) => None,
    };
    let pid = if let Some(x) = external {
        exec_external(
            shim,
            &x,
            &r,
            [stdin, stdout, stderr],
            console_path.as_deref(),
        )?
    } else {
        exec_builtin(shim, &r, [stdin, stdout, stderr], console_path.as_deref())?
    };
    if let Some(c) = console {
        io.set_master(c.receive()?, &shim.log, &mut copiers)?;
    }
    Ok(register_exec(shim, &r.exec_id, pid))
}

/// The built-in executor's exec: the helper joins the container; returns the new pid.
fn exec_builtin(
    shim: &Arc<Shim>,
    r: &ExecProcess,
    [stdin, stdout, stderr]: [OwnedFd; 3],
    console: Option<&Path>,
) -> Result<u32, Error> {
    let process = serde_json::json!({"args": r.args, "env": r.env, "cwd": r.cwd});
    let (out_r, out_w) = pipe()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(crate::tasks::SHIM_ARGV0)
        .arg("exec")
        .arg("--id")
        .arg(&shim.id)
        .arg("--root")
        .arg(shim.dir.join("runtime"))
        .arg("--process")
        .arg(process.to_string())
        .arg("--spec")
        .arg(shim.dir.join("config.json"));
    if let Some(c) = console {
        cmd.arg("--console-socket").arg(c);
    }
    // The reaper may see the helper's exit before we register it: hold the state lock over
    // the spawn so the registration comes first.
    let mut s = shim.state.lock().expect("state lock");
    let child = cmd
        .stdin(std::process::Stdio::from(stdin))
        .stdout(std::process::Stdio::from(out_w))
        .stderr(std::process::Stdio::from(stderr))
        .spawn_with_stdout_fd(stdout)
        .map_err(io_err("start the exec helper"))?;
    s.helpers.insert(child, tx);
    drop(s);
    // The command keeps the fds it was given: our copies of the report pipe's write end and
    // of the process's stdio must close, or their readers never see the end.
    drop(cmd);
    let mut line = String::new();
    let _ = File::from(out_r).read_to_string(&mut line);
    let code = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| Error::Executor("the exec helper did not finish in 60 s".into()))?;
    let line = line.trim();
    match line.parse() {
        Ok(p) if code == 0 => Ok(p),
        _ => Err(Error::Executor(
            line.strip_prefix("error: ").unwrap_or(line).to_owned(),
        )),
    }
}

/// Records a started exec process (or its exit, when the reaper saw it first).
fn register_exec(shim: &Shim, exec_id: &str, pid: u32) -> u32 {
    let mut s = shim.state.lock().expect("state lock");
    let early = s.early.remove(&pid);
    if let Some(p) = s.execs.get_mut(exec_id) {
        p.pid = pid;
        p.status = Status::Running;
        if let Some(rec) = early {
            p.status = Status::Stopped;
            p.exit = Some(rec);
            p.io.output.set_exit(rec);
        }
    }
    drop(s);
    shim.changed.send_modify(|n| *n += 1);
    pid
}

/// `runc exec --detach` with the process's stdio; returns its pid.
fn exec_external(
    shim: &Shim,
    x: &crate::tasks::runc::Runc,
    r: &ExecProcess,
    [stdin, stdout, stderr]: [OwnedFd; 3],
    console: Option<&Path>,
) -> Result<u32, Error> {
    let spec = crate::tasks::spec::parse(
        &std::fs::read(shim.dir.join("config.json")).map_err(io_err("read config.json"))?,
    )?;
    let process =
        crate::tasks::runc::exec_process(&spec, &r.args, &r.env, &r.cwd, console.is_some())?;
    // The exec id is a validated identifier (berthctl generates one); keep the file names
    // safe anyway.
    let tag: String = r
        .exec_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let process_path = shim.dir.join(format!("exec-{tag}.json"));
    let pid_path = shim.dir.join(format!("exec-{tag}.pid"));
    std::fs::write(&process_path, process.to_string())
        .map_err(io_err(format!("write {}", process_path.display())))?;
    let offset = x.log_offset();
    let mut cmd = x.exec_command(&process_path, &pid_path, console);
    cmd.stdin(std::process::Stdio::from(stdin))
        .stdout(std::process::Stdio::from(stdout))
        .stderr(std::process::Stdio::from(stderr));
    let result = run_helper(shim, &mut cmd);
    drop(cmd);
    let _ = std::fs::remove_file(&process_path);
    let (code, _) = result?;
    let pid = if code == 0 {
        crate::tasks::runc::read_pid(&pid_path)
    } else {
        Err(Error::Executor(format!(
            "{} exec: {}",
            x.binary.display(),
            x.errors_since(offset, &format!("exit status {code}"))
        )))
    };
    let _ = std::fs::remove_file(&pid_path);
    pid
}

/// Spawning the helper with the process's stdout on fd 3 (the helper's own stdout is the
/// pid report).
trait SpawnWithFd {
    fn spawn_with_stdout_fd(&mut self, fd: OwnedFd) -> std::io::Result<u32>;
}

impl SpawnWithFd for std::process::Command {
    fn spawn_with_stdout_fd(&mut self, fd: OwnedFd) -> std::io::Result<u32> {
        let raw = fd.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and only calls dup2, which
        // is async-signal-safe; `fd` stays open in the parent until spawn returns.
        unsafe {
            self.pre_exec(move || {
                if raw == 3 {
                    if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.spawn()?;
        drop(fd);
        Ok(child.id())
    }
}

/// The exec helper: joins the container with libcontainer's tenant builder. Its stdin and
/// stderr are the process's, fd 3 the process's stdout.
fn exec_helper(a: &ExecArgs) -> Result<u32, Error> {
    #[derive(serde::Deserialize)]
    struct P {
        args: Vec<String>,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        cwd: String,
    }
    let p: P = serde_json::from_str(&a.process)
        .map_err(|e| Error::InvalidSpec(format!("exec process: {e}")))?;
    let env: HashMap<String, String> = p
        .env
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let dup = |fd: i32| -> Result<OwnedFd, Error> {
        let n = nix::unistd::dup(fd).map_err(|e| Error::Io {
            what: format!("dup fd {fd}"),
            source: e.into(),
        })?;
        // SAFETY: dup returned a new descriptor owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(n) })
    };
    let spec = crate::tasks::spec::parse(
        &std::fs::read(&a.spec).map_err(io_err(format!("read {}", a.spec.display())))?,
    )?;
    let user = spec.process().as_ref().map(|p| p.user().clone());
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let builder = libcontainer::container::builder::ContainerBuilder::new(
        a.id.clone(),
        libcontainer::syscall::syscall::SyscallType::default(),
    )
    .with_executor(SeccompExecutor { seccomp })
    .with_root_path(&a.root)
    .map_err(|e| Error::Executor(e.to_string()))?
    .with_stdin(dup(0)?)
    .with_stdout(dup(3)?)
    .with_stderr(dup(2)?)
    .with_console_socket(a.console_socket.as_ref());
    if let Some(socket) = &a.console_socket {
        // libcontainer's tenant builder takes `terminal` only from a whole process file:
        // the container's process (user, capabilities, rlimits, no_new_privs) with the
        // exec's arguments, environment and cwd, as the external runtime gets it.
        let process = crate::tasks::runc::exec_process(&spec, &p.args, &p.env, &p.cwd, true)?;
        let file = socket.with_extension("json");
        std::fs::write(&file, process.to_string())
            .map_err(io_err(format!("write {}", file.display())))?;
        let built = builder
            .as_tenant()
            .with_process(Some(&file))
            .with_detach(true)
            .build()
            .map_err(|e| Error::Executor(berth_api::errdefs::chain(&e)));
        let _ = std::fs::remove_file(&file);
        return Ok(built?.as_raw() as u32);
    }
    let pid = builder
        .as_tenant()
        .with_container_args(p.args)
        .with_env(env)
        .with_cwd((!p.cwd.is_empty()).then_some(PathBuf::from(p.cwd)))
        .with_user(user.as_ref().map(|u| u.uid()))
        .with_group(user.as_ref().map(|u| u.gid()))
        .with_additional_gids(
            user.as_ref()
                .and_then(|u| u.additional_gids().clone())
                .unwrap_or_default(),
        )
        .with_detach(true)
        .build()
        .map_err(|e| Error::Executor(berth_api::errdefs::chain(&e)))?;
    Ok(pid.as_raw() as u32)
}

/// Hand-written around libcontainer 0.7: its tenant (exec) builder rebuilds the spec's
/// `linux` section with namespaces and cgroup only, so an exec'd process would run without
/// the container's seccomp profile (runc applies it). This executor installs the profile as
/// the last step before the exec — after the user switch, with no_new_privs set — and then
/// runs the default executor.
#[derive(Clone)]
struct SeccompExecutor {
    seccomp: Option<oci_spec::runtime::LinuxSeccomp>,
}

impl libcontainer::workload::Executor for SeccompExecutor {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        if let Some(s) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(s).map_err(|e| {
                libcontainer::workload::ExecutorError::Other(format!("seccomp: {e}"))
            })?;
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}
