//! The executor side of the shim: creating the container under one of the two runtime
//! handlers ([`Executor`]: youki's libcontainer in this process, or an external OCI runtime
//! binary), sealing the shim's own binary against the container (CVE-2019-5736), and the
//! shim's and container's cgroups.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;

use super::args::ServeArgs;
use super::io::io_err;
use crate::tasks::Error;

/// Environment variable marking a shim that already runs from its read-only binary.
const SEALED_ENV: &str = "BERTH_SHIM_SEALED";

/// Re-executes the shim from a read-only bind mount of its own binary, in a private mount
/// namespace, so that no process of the container can write the host's berth binary
/// through `/proc/<pid>/exe` — the CVE-2019-5736 class: the container's init is a clone of
/// the shim until it execs, and an entrypoint of `/proc/self/exe` would exec the shim's
/// binary inside the container. A write through that magic link then meets the read-only
/// mount (EROFS), including after the process exits (the O_PATH-then-reopen trick). runc
/// did the same with a read-only bind mount before moving to memfd copies; a bind mount
/// costs no memory per shim, a memfd copy costs the binary's size.
pub(super) fn seal_exe(dir: &Path) -> Result<(), Error> {
    use nix::mount::{mount, MsFlags};
    if std::env::var_os(SEALED_ENV).is_some() {
        return Ok(());
    }
    let sys = |what: &str| {
        let what = what.to_owned();
        move |e: nix::errno::Errno| Error::Io {
            what,
            source: e.into(),
        }
    };
    // The path, not the magic link: /proc/self/exe refers to a mount of the namespace left
    // behind, which cannot be bind-mounted from the new one.
    let exe = std::fs::read_link("/proc/self/exe").map_err(io_err("read /proc/self/exe"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(sys("unshare the shim's mount namespace"))?;
    // Nothing mounted below may leak back to the host; the host's unmounts still come in.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("make / a slave mount"))?;
    let target = dir.join(".exe");
    File::create(&target).map_err(io_err(format!("create {}", target.display())))?;
    mount(
        Some(&exe),
        &target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys("bind-mount the shim's binary"))?;
    mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(sys("make the shim's binary read-only"))?;
    let err = std::process::Command::new(&target)
        .arg0(crate::tasks::SHIM_ARGV0)
        .args(std::env::args_os().skip(1))
        .env(SEALED_ENV, "1")
        .exec();
    Err(Error::Io {
        what: format!("re-execute the shim from {}", target.display()),
        source: err,
    })
}

/// Puts the (sealed) shim back into the host's mount namespace, before it creates the
/// container. Sealing needs a namespace of its own for the read-only bind mount of the
/// binary, and that namespace's `/` is a slave of the host's, so nothing mounted in it leaks
/// out; but a container is cloned from its shim's namespace, and in a slave copy a mount
/// the container makes under a bidirectional (`rshared`) volume cannot propagate back to
/// the host (kubelet's `Bidirectional` mount propagation, used by CSI drivers; critest's
/// "rshared" spec). Back in the host's namespace the shim keeps what matters: its
/// executable is still the read-only mount it was executed from (`/proc/<pid>/exe` leads to
/// that mount, which stays alive while referenced), so CVE-2019-5736's write through the
/// link still meets EROFS (test `the_shims_binary_is_read_only`).
pub(super) fn return_to_host_mounts(host: &File, dir: &Path) -> Result<(), Error> {
    nix::sched::setns(host, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| Error::Io {
        what: "return to the host's mount namespace".into(),
        source: e.into(),
    })?;
    // setns leaves the working directory at the namespace's root.
    std::env::set_current_dir(dir).map_err(io_err(format!("chdir {}", dir.display())))
}

/// The command berthd starts a shim with: already sealed, in one `execve` instead of two.
/// The forked child makes the same read-only bind mount as [`seal_exe`] (own mount namespace,
/// `/` a slave, the binary bind-mounted read-only on `<dir>/.exe`), after `setsid()`, and
/// then executes `<dir>/.exe` itself — the path resolves in the new namespace, so the
/// first image of the shim is the read-only one. Saves the shim's re-execution of a
/// multi-megabyte binary on every container start.
pub fn sealed_command(dir: &Path) -> Result<std::process::Command, Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let exe = std::fs::read_link("/proc/self/exe").map_err(io_err("read /proc/self/exe"))?;
    let target = dir.join(".exe");
    File::create(&target).map_err(io_err(format!("create {}", target.display())))?;
    let c =
        |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::BadPath(p.to_owned()));
    let (exe_c, target_c, root_c) = (c(&exe)?, c(&target)?, c(Path::new("/"))?);
    let mut cmd = std::process::Command::new(&target);
    cmd.arg0(crate::tasks::SHIM_ARGV0).env(SEALED_ENV, "1");
    // SAFETY: the closure runs in the forked child before exec and makes only raw system
    // calls (setsid, unshare, mount) on C strings built before the fork: no allocation and
    // no lock, as required after fork in a multi-threaded process. `last_os_error` reads
    // errno without allocating.
    unsafe {
        cmd.pre_exec(move || {
            let null = std::ptr::null::<libc::c_char>();
            let check = |r: libc::c_int| {
                if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::setsid())?;
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                null,
                root_c.as_ptr(),
                null,
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                exe_c.as_ptr(),
                target_c.as_ptr(),
                null,
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                null,
                target_c.as_ptr(),
                null,
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            ))
        });
    }
    Ok(cmd)
}

/// Puts the shim into `containers.slice/<ns>-<id>/shim` on a cgroup v2 host.
pub(super) fn place_in_cgroup(ns: &str, id: &str) {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        tracing::info!("cgroup v2 is not mounted at /sys/fs/cgroup (v1 or hybrid host): the shim stays in berthd's cgroup");
        return;
    }
    let dir = root.join(format!("containers.slice/{ns}-{id}/shim"));
    let r = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string()));
    if let Err(e) = r {
        tracing::warn!(cgroup = %dir.display(), "cannot place the shim in its cgroup: {e}");
    }
}

/// Removes the container's cgroup `cgroup` and `containers.slice/<ns>-<id>` (v2) or their
/// per-controller copies (v1), best effort (see [`crate::tasks::cgroups::remove`]).
pub fn remove_cgroups(ns: &str, id: &str, cgroup: &str) {
    crate::tasks::cgroups::remove(ns, id, cgroup)
}

/// The container under one of the two runtime handlers.
pub(super) enum Executor {
    /// youki's libcontainer, in this process.
    Builtin(libcontainer::container::Container),
    /// An external OCI runtime binary (see [`crate::tasks::runc`]).
    External(crate::tasks::runc::Runc),
}

/// Creates the container with libcontainer (it clones this process: no thread may hold a
/// lock the child needs), with the init's stdio, or a terminal whose master goes to
/// `console`.
pub(super) fn builtin_create(
    a: &ServeArgs,
    dir: &Path,
    [stdin, stdout, stderr]: [std::os::fd::OwnedFd; 3],
    console: Option<&Path>,
) -> Result<(u32, Executor), Error> {
    let container = libcontainer::container::builder::ContainerBuilder::new(
        a.id.clone(),
        libcontainer::syscall::syscall::SyscallType::default(),
    )
    .with_executor(DefaultSigpipe)
    .with_root_path(dir.join("runtime"))
    .map_err(|e| Error::Executor(e.to_string()))?
    .with_stdin(stdin)
    .with_stdout(stdout)
    .with_stderr(stderr)
    .with_console_socket(console)
    .as_init(dir)
    .with_systemd(false)
    .with_detach(true)
    .build()
    .map_err(|e| Error::Executor(berth_api::errdefs::chain(&e)))?;
    let pid = container.pid().map_or(0, |p| p.as_raw() as u32);
    Ok((pid, Executor::Builtin(container)))
}

/// The init's workload executor: SIGPIPE back to its default action, then libcontainer's
/// default executor. The shim ignores SIGPIPE (Rust's runtime does: a write to a reader that
/// went away is an error, not death), the init is a clone of the shim, and an ignored signal
/// stays ignored across `execve`: without this every process of the container would ignore
/// it, and `yes | head` in a container would never end (`yes` spinning on EPIPE). The exec
/// helper and an external runtime are spawned by `std::process::Command`, which resets
/// SIGPIPE in its children itself.
#[derive(Clone)]
pub(super) struct DefaultSigpipe;

impl libcontainer::workload::Executor for DefaultSigpipe {
    fn exec(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorError> {
        use nix::sys::signal::{signal, SigHandler, Signal};
        // SAFETY: installing SIG_DFL registers no handler code; this runs in the container's
        // init right before it executes the workload.
        unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.map_err(|e| {
            libcontainer::workload::ExecutorError::Other(format!("reset SIGPIPE: {e}"))
        })?;
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(
        &self,
        spec: &oci_spec::runtime::Spec,
    ) -> Result<(), libcontainer::workload::ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}
