//! `--nodes a,b,c`: one verb on several nodes at once, like `talosctl -n`. Each node runs in a
//! berthctl of its own (this program again, with `--remote NAME=ADDRESS` instead of
//! `--nodes`), so a slow or dead node holds up nobody and every verb works unchanged; their
//! lines come out as they are written, each prefixed with its node (`node-a: …`, standard
//! error too), and the run exits 1 when any node failed, after one line naming them.
//!
//! Only verbs that read, and `system upgrade`/`system reboot`, fan out: changing many nodes
//! with one command is for the A/B upgrade path, which can roll back.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::remote::NodeSpec;

/// The verbs (command paths) that may run on several nodes.
pub const ALLOWED: &[&str] = &[
    "version",
    "plugins ls",
    "namespaces ls",
    "content ls",
    "images ls",
    "leases ls",
    "snapshots ls",
    "snapshots tree",
    "snapshots usage",
    "hosts resolve",
    "containers ls",
    "containers info",
    "tasks ls",
    "tasks ps",
    "tasks metrics",
    "tasks logs",
    "events",
    "system status",
    "system log",
    "system reboot",
    "system upgrade",
    "node config ls",
    "node config get",
];

/// The command path of parsed matches (`images ls`), canonical names (no aliases).
pub fn command_path(m: &clap::ArgMatches) -> String {
    let mut words = Vec::new();
    let mut cur = m;
    while let Some((name, sub)) = cur.subcommand() {
        words.push(name.to_string());
        cur = sub;
    }
    words.join(" ")
}

/// `args` without `--nodes X` / `--nodes=X`, with `--remote SPEC` in front.
fn child_args(args: &[OsString], spec: &str) -> Vec<OsString> {
    let mut out: Vec<OsString> = vec!["--remote".into(), spec.into()];
    let mut skip = false;
    for a in args.iter().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        let s = a.to_string_lossy();
        if s == "--nodes" {
            skip = true;
        } else if !s.starts_with("--nodes=") {
            out.push(a.clone());
        }
    }
    out
}

/// Copies `from` line by line to `to`, each line prefixed.
fn pump<R: std::io::Read, W: Write>(from: R, to: Arc<Mutex<W>>, prefix: String) {
    for line in BufReader::new(from).split(b'\n').map_while(Result::ok) {
        if let Ok(mut w) = to.lock() {
            let p = if line.is_empty() {
                prefix.trim_end()
            } else {
                prefix.as_str()
            };
            let _ = w.write_all(p.as_bytes());
            let _ = w.write_all(&line);
            let _ = w.write_all(b"\n");
            let _ = w.flush();
        }
    }
}

/// Runs `args` (the whole command line) on each of `nodes`; Ok when every node succeeded.
pub fn run(args: &[OsString], path: &str, nodes: &[NodeSpec]) -> Result<(), Error> {
    if !ALLOWED.contains(&path) {
        return Err(Error::Usage(format!(
            "--nodes runs read verbs, `system upgrade` and `system reboot` only, not `{path}` \
             (use --remote for one node)"
        )));
    }
    let exe = std::env::current_exe().map_err(Error::io("cannot find berthctl's executable"))?;
    let width = nodes.iter().map(|n| n.name.len()).max().unwrap_or(0);
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let stderr = Arc::new(Mutex::new(std::io::stderr()));
    let mut running = Vec::new();
    for n in nodes {
        let prefix = format!("{:<width$}  ", format!("{}:", n.name), width = width + 1);
        // argv[0] "berthctl": the multi-call binary dispatches on it.
        let child = Command::new(&exe)
            .arg0("berthctl")
            .args(child_args(args, &n.spec()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                pump(
                    format!("cannot start berthctl: {e}\n").as_bytes(),
                    stderr.clone(),
                    prefix,
                );
                running.push((n.name.clone(), None, Vec::new()));
                continue;
            }
        };
        let mut pumps = Vec::new();
        if let Some(out) = child.stdout.take() {
            let (to, p) = (stdout.clone(), prefix.clone());
            pumps.push(std::thread::spawn(move || pump(out, to, p)));
        }
        if let Some(err) = child.stderr.take() {
            let (to, p) = (stderr.clone(), prefix);
            pumps.push(std::thread::spawn(move || pump(err, to, p)));
        }
        running.push((n.name.clone(), Some(child), pumps));
    }
    let mut failed = Vec::new();
    for (name, child, pumps) in running {
        let ok = child
            .and_then(|mut c| c.wait().ok())
            .is_some_and(|s| s.success());
        for p in pumps {
            let _ = p.join();
        }
        if !ok {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::Nodes {
            failed: failed.len(),
            total: nodes.len(),
            names: failed.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_one_node_and_no_nodes_flag() {
        let args: Vec<OsString> = ["berthctl", "--nodes", "a,b", "images", "ls", "--nodes=c"]
            .iter()
            .map(OsString::from)
            .collect();
        let out: Vec<String> = child_args(&args, "a=10.0.0.1:7443")
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(out, ["--remote", "a=10.0.0.1:7443", "images", "ls"]);
    }

    #[test]
    fn only_read_verbs_and_the_upgrade_path_fan_out() {
        use clap::CommandFactory;
        let paths: std::collections::BTreeSet<String> = {
            fn walk(c: &clap::Command, p: &str, out: &mut std::collections::BTreeSet<String>) {
                for s in c.get_subcommands() {
                    let q = if p.is_empty() {
                        s.get_name().to_string()
                    } else {
                        format!("{p} {}", s.get_name())
                    };
                    out.insert(q.clone());
                    walk(s, &q, out);
                }
            }
            let mut out = Default::default();
            walk(&crate::Args::command(), "", &mut out);
            out
        };
        for a in ALLOWED {
            assert!(paths.contains(*a), "{a} is no verb");
        }
        let e = run(&[], "run", &[]).unwrap_err().to_string();
        assert!(e.contains("not `run`"), "{e}");
    }
}
