//! The shim's command line and its start-up report: the contract between berthd, which
//! starts `berth-shim serve …` ([`serve_args`]) and reads one line from the shim's stdout
//! ([`parse_report`]), and the shim, which writes `ok <pid>` once the container exists and
//! the socket listens, or `error: <message>` ([`report`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::tasks::TaskIo;

/// `berth-shim` command line.
#[derive(Debug, Parser)]
#[command(
    name = "berth-shim",
    about = "berth's per-container shim (started by berthd)"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: ShimCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ShimCommand {
    /// Create the container of the bundle in DIR and serve it.
    Serve(ServeArgs),
    /// (internal) Create an extra process in a running container and print its pid.
    Exec(ExecArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub namespace: String,
    #[arg(long)]
    pub id: String,
    /// The bundle and the shim's directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// Keep the init's stdin open for attached clients (else it is /dev/null).
    #[arg(long)]
    pub stdin: bool,
    /// An external OCI runtime binary with runc's command line (absent: the built-in
    /// libcontainer executor).
    #[arg(long)]
    pub runtime_binary: Option<PathBuf>,
    /// The socket to serve the shim API on (absent: `<dir>/shim.sock`, the layout before
    /// hashed socket names, see `tasks::shim_socket`).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Also write the init's output in kubelet's CRI log format to this file
    /// (`tasks::shim::cri_log`).
    #[arg(long)]
    pub cri_log: Option<PathBuf>,
}

impl ServeArgs {
    /// The socket the shim serves on.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| crate::tasks::shim_socket::legacy(&self.dir))
    }
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub root: PathBuf,
    /// JSON: {"args":[..],"env":[..],"cwd":".."}
    #[arg(long)]
    pub process: String,
    /// The container's config.json: the exec'd process gets its user and seccomp profile.
    #[arg(long)]
    pub spec: PathBuf,
    /// Give the process a terminal, its master sent to this socket.
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
}

/// The arguments of `berth-shim serve` for container `id` of `ns` in `dir`, with the stdin
/// of `io` (its terminal is the spec's `process.terminal`) and an external runtime `binary`
/// (absent: the built-in executor).
pub fn serve_args(
    ns: &str,
    id: &str,
    dir: &Path,
    io: &TaskIo,
    runtime_binary: Option<&Path>,
) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = ["serve", "--namespace", ns, "--id", id, "--dir"]
        .iter()
        .map(Into::into)
        .collect();
    v.push(dir.into());
    if io.stdin {
        v.push("--stdin".into());
    }
    if let Some(b) = runtime_binary {
        v.push("--runtime-binary".into());
        v.push(b.into());
    }
    v
}

/// Writes one report line on stdout (berthd's pipe) and flushes it.
pub fn report(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The init's pid from a shim's report, or why the shim failed.
pub fn parse_report(output: &str) -> Result<u32, String> {
    let line = output.lines().next().unwrap_or("").trim().to_owned();
    if let Some(pid) = line.strip_prefix("ok ") {
        return pid.parse().map_err(|_| format!("bad report {line:?}"));
    }
    let reason = line.strip_prefix("error: ").unwrap_or(&line);
    Err(if reason.is_empty() {
        "exited without a report (see its shim.log)".to_owned()
    } else {
        reason.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_args_parse_back() {
        let io = TaskIo {
            stdin: true,
            terminal: true,
        };
        let mut argv = vec![std::ffi::OsString::from("berth-shim")];
        argv.extend(serve_args(
            "ns",
            "c",
            Path::new("/d"),
            &io,
            Some(Path::new("/runc")),
        ));
        let ShimCommand::Serve(a) = Args::try_parse_from(argv).unwrap().command else {
            panic!("serve")
        };
        assert_eq!((a.namespace.as_str(), a.id.as_str()), ("ns", "c"));
        assert_eq!(a.dir, PathBuf::from("/d"));
        assert!(a.stdin);
        assert_eq!(a.runtime_binary, Some(PathBuf::from("/runc")));
    }

    #[test]
    fn reports_parse() {
        assert_eq!(parse_report("ok 42\n"), Ok(42));
        assert_eq!(
            parse_report("error: no such image\n"),
            Err("no such image".into())
        );
        assert_eq!(
            parse_report(""),
            Err("exited without a report (see its shim.log)".into())
        );
        assert_eq!(parse_report("ok x"), Err("bad report \"ok x\"".into()));
    }
}
