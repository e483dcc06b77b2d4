//! Starting a container's shim and talking to it: the engine is a ttrpc client of each shim
//! (its socket `<state>/s/<hash>`, [`super::shim_socket`]). Also the bind-mount check done before a
//! shim is started, and the mapping of a shim's answers onto task errors.

use std::path::Path;
use std::time::Duration;

use berth_api::proto::shim_ttrpc;

use super::{Error, TaskIo};

/// How long berthd waits for a new shim to report.
const SHIM_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A shim's answer as a task error: its status class kept where the task layer has one (an
/// invalid argument reads as an invalid container spec, as it always did), anything else a
/// shim failure naming the container.
pub(super) fn shim_err(id: &str, e: ttrpc::Error) -> Error {
    match e {
        ttrpc::Error::RpcStatus(s) => {
            let msg = s.message().to_owned();
            match s.code() {
                ttrpc::Code::NOT_FOUND => Error::NotFound(msg),
                ttrpc::Code::ALREADY_EXISTS => Error::AlreadyExists(msg),
                ttrpc::Code::FAILED_PRECONDITION => Error::FailedPrecondition(msg),
                ttrpc::Code::INVALID_ARGUMENT => Error::InvalidSpec(msg),
                _ => Error::Shim {
                    id: id.to_owned(),
                    reason: msg,
                },
            }
        }
        other => Error::Shim {
            id: id.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Bind mounts whose source and existing destination differ in kind fail here with a clear
/// message (the executor's own error would be "not a directory" from deep inside).
pub(super) fn check_binds(spec: &oci_spec::runtime::Spec, rootfs: &Path) -> Result<(), Error> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let Some(mounts) = spec.mounts() else {
        return Ok(());
    };
    let root = std::fs::File::open(rootfs).map_err(|source| Error::Io {
        what: format!("open {}", rootfs.display()),
        source,
    })?;
    for m in mounts {
        if m.typ().as_deref() != Some("bind") {
            continue;
        }
        let Some(src) = m.source() else { continue };
        let src_meta = std::fs::metadata(src).map_err(|source| Error::Io {
            what: format!("stat bind mount source {}", src.display()),
            source,
        })?;
        let dst = m.destination();
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let rel = dst.strip_prefix("/").unwrap_or(dst);
        let Ok(fd) = openat2(std::os::fd::AsRawFd::as_raw_fd(&root), rel, how) else {
            continue; // created by the executor with the source's kind
        };
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        let f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let Ok(dst_meta) = f.metadata() else { continue };
        let kind = |d: bool| if d { "directory" } else { "file" };
        if src_meta.is_dir() != dst_meta.is_dir() {
            return Err(Error::InvalidSpec(format!(
                "cannot mount {} {} onto {} {}",
                kind(src_meta.is_dir()),
                src.display(),
                kind(dst_meta.is_dir()),
                dst.display()
            )));
        }
    }
    Ok(())
}

pub(super) async fn connect(sock: &Path) -> Result<shim_ttrpc::ShimClient, Error> {
    let addr = format!("unix://{}", sock.display());
    // A stale socket file of a dead shim refuses the connection at once.
    std::os::unix::net::UnixStream::connect(sock).map_err(|source| Error::Io {
        what: format!("connect to {}", sock.display()),
        source,
    })?;
    let c = ttrpc::r#async::Client::connect(&addr)
        .await
        .map_err(|e| Error::Shim {
            id: sock.display().to_string(),
            reason: format!("connect: {e}"),
        })?;
    Ok(shim_ttrpc::ShimClient::new(c))
}

/// Starts `berth-shim serve` (setsid, then it forks again) and waits for its report line.
pub(super) async fn start_shim(
    ns: &str,
    id: &str,
    dir: &Path,
    socket: &Path,
    io: &TaskIo,
    cri_log: Option<&Path>,
    runtime_binary: Option<&Path>,
) -> Result<u32, Error> {
    let mut cmd = super::shim::executor::sealed_command(dir)?;
    cmd.args(super::shim::args::serve_args(
        ns,
        id,
        dir,
        io,
        runtime_binary,
    ));
    cmd.arg("--socket").arg(socket);
    if let Some(p) = cri_log {
        cmd.arg("--cri-log").arg(p);
    }
    cmd.current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let id2 = id.to_owned();
    let line = tokio::task::spawn_blocking(move || -> Result<String, Error> {
        let mut child = cmd.spawn().map_err(|source| Error::Io {
            what: "start the shim".into(),
            source,
        })?;
        let mut out = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut line);
        let _ = child.wait();
        Ok(line)
    });
    let line = tokio::time::timeout(SHIM_START_TIMEOUT, line)
        .await
        .map_err(|_| Error::Shim {
            id: id2.clone(),
            reason: "no report within 30 s".into(),
        })?
        .map_err(|e| Error::Shim {
            id: id2.clone(),
            reason: e.to_string(),
        })??;
    super::shim::args::parse_report(&line).map_err(|reason| Error::Shim { id: id2, reason })
}
