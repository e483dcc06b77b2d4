//! The `berth-apid` applet as its own process (this test binary re-executed): it serves from
//! its TOML file, reloads the deny list on SIGHUP, stops cleanly on SIGTERM, refuses a file
//! it cannot use with EXIT_CONFIG, and its own memory stays flat when sent a 1 GiB header.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_remote::client::connect_tls;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// The environment variable that turns this test binary into berth-apid.
pub const APID_ENV: &str = "BERTH_REMOTE_TEST_APID_CONFIG";

/// Run by the re-executed test binary.
pub fn apid_child_entry() {
    if let Some(cfg) = std::env::var_os(APID_ENV) {
        let args = vec!["berth-apid".into(), "--config".into(), cfg];
        std::process::exit(berth_remote::apid::main_with_args(args));
    }
}

fn spawn(cfg: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "apid_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(APID_ENV, cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Writes the node's credentials and an apid.toml in `dir` denying `deny`.
fn write_config(dir: &Path, berthd: &Path, deny: &[&str]) -> std::path::PathBuf {
    let f = fleet();
    std::fs::write(dir.join("ca.pem"), f.ca.cert_pem()).unwrap();
    std::fs::write(dir.join("node.pem"), &f.node.cert_pem).unwrap();
    std::fs::write(dir.join("node.key"), &f.node.key_pem).unwrap();
    let deny: Vec<String> = deny.iter().map(|s| format!("{s:?}")).collect();
    let cfg = dir.join("apid.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nca = \"{0}/ca.pem\"\ncert = \"{0}/node.pem\"\nkey = \"{0}/node.key\"\n\
             berthd = \"{1}\"\ninit = \"{0}/init.sock\"\ndeny_serials = [{2}]\n",
            dir.display(),
            berthd.display(),
            deny.join(", ")
        ),
    )
    .unwrap();
    cfg
}

/// Reads the child's stderr until the listening line; returns the address and keeps
/// draining stderr into this process's stderr.
fn listening_addr(child: &mut Child) -> SocketAddr {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        eprintln!("apid: {line}");
        if let Some(rest) = line.split("remote API listening addr=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            std::thread::spawn(move || {
                for l in lines.map_while(Result::ok) {
                    eprintln!("apid: {l}");
                }
            });
            return addr;
        }
    }
    panic!("berth-apid did not say where it listens");
}

/// VmRSS and VmHWM of `pid`, KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applet_serves_reloads_on_sighup_and_stops_on_sigterm() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let berthd = start_berthd(dir.path()).await;
    let cfg = write_config(dir.path(), &berthd.socket, &[]);
    let mut child = spawn(&cfg);
    let addr = listening_addr(&mut child);
    let node = addr.to_string();
    let admin = client_creds(&fleet().admin);
    let c = berth_remote::client::connect(&node, NODE, &admin, Duration::from_secs(10))
        .await
        .unwrap();
    version(&c).await.unwrap();

    // The listener's own memory around a 1 GiB frame header.
    let (rss0, hwm0) = memory_kib(child.id());
    let mut tls = connect_tls(&node, NODE, &admin, Duration::from_secs(10))
        .await
        .unwrap();
    tls.write_all(&[0x40, 0, 0, 0, 0, 0, 0, 1, 1, 0])
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    let (rss1, hwm1) = memory_kib(child.id());
    println!(
        "berth-apid around a 1 GiB header: VmRSS {rss0} -> {rss1} KiB, VmHWM {hwm0} -> {hwm1} KiB"
    );
    assert!(
        hwm1 < hwm0 + 64 * 1024,
        "the listener's peak grew by {} KiB",
        hwm1 - hwm0
    );

    // SIGHUP re-reads the file: the admin's serial denied from now on.
    write_config(dir.path(), &berthd.socket, &[fleet().admin.serial.as_str()]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = berth_remote::client::connect(&node, NODE, &admin, Duration::from_secs(10))
            .await
            .unwrap();
        match version(&c).await {
            Err(ttrpc::Error::RpcStatus(s)) if s.code() == ttrpc::Code::PERMISSION_DENIED => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("the reload did not deny the admin: {other:?}"),
        }
    }
    let reader = connect_to(&node, &fleet().reader).await;
    version(&reader).await.unwrap();

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}

async fn connect_to(node: &str, who: &berth_remote::pki::Issued) -> ttrpc::r#async::Client {
    berth_remote::client::connect(node, NODE, &client_creds(who), Duration::from_secs(10))
        .await
        .unwrap()
}

#[test]
fn the_applet_refuses_missing_credentials_with_exit_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("apid.toml");
    std::fs::write(
        &cfg,
        "ca = \"/nonexistent/ca.pem\"\ncert = \"/nonexistent/n.pem\"\nkey = \"/nonexistent/n.key\"\n",
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "apid_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(APID_ENV, &cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(berth_api::EXIT_CONFIG), "{err}");
    assert!(
        err.contains("cannot read CA certificate /nonexistent/ca.pem"),
        "{err}"
    );
}
