//! The fixtures of the remote API's host tests: a fleet PKI, a real berthd on a temporary
//! root (this test binary re-executed as berthd), a stand-in for init's System service, the
//! listener in-process on loopback, clients per role, and captured log lines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_api::proto::{system, system_ttrpc, version, version_ttrpc};
use berth_remote::pki::{Ca, Issued, Validity};
use berth_remote::roles::Role;
use berth_remote::tls::{server_config, Credentials};
use berth_remote::{Backends, DenyList, Handle, Limits, Listener, ListenerConfig, Live};
use ttrpc::r#async::TtrpcContext;

/// The node name the node certificate carries (with 127.0.0.1).
pub const NODE: &str = "node-a";
/// The environment variable that turns this test binary into berthd.
pub const BERTHD_ENV: &str = "BERTH_REMOTE_TEST_BERTHD_CONFIG";

/// The fleet: a CA, node-a's certificate, one client certificate per role, and node-b's
/// certificate from the same CA.
pub struct Fleet {
    pub ca: Ca,
    pub node: Issued,
    pub node_b: Issued,
    pub admin: Issued,
    pub operator: Issued,
    pub reader: Issued,
    pub peer: Issued,
}

/// One fleet for the whole test binary.
pub fn fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        let v = Validity::days(1);
        let ca = Ca::create("test fleet", v).unwrap();
        let lo = ["127.0.0.1".parse().unwrap()];
        let node = ca.issue_node(NODE, &[NODE.into()], &lo, v).unwrap();
        let node_b = ca.issue_node("node-b", &["node-b".into()], &[], v).unwrap();
        let client = |cn, role| ca.issue_client(cn, role, v).unwrap();
        Fleet {
            admin: client("ada", Role::Admin),
            operator: client("otto", Role::Operator),
            reader: client("rita", Role::Reader),
            peer: client("node-c", Role::Peer),
            node,
            node_b,
            ca,
        }
    })
}

/// Credentials of `who` trusting `ca_pem`.
pub fn creds(ca_pem: &str, who: &Issued) -> Credentials {
    Credentials::from_pem(ca_pem, &who.cert_pem, &who.key_pem).unwrap()
}

/// A client of the test fleet.
pub fn client_creds(who: &Issued) -> Credentials {
    creds(fleet().ca.cert_pem(), who)
}

/// node-a's live configuration with `deny`.
pub fn node_live(deny: DenyList) -> Live {
    Live {
        tls: server_config(&creds(fleet().ca.cert_pem(), &fleet().node)).unwrap(),
        deny,
    }
}

/// Run by the re-executed test binary: berthd with the configuration `BERTHD_ENV` names.
pub fn berthd_child_entry() {
    if let Some(cfg) = std::env::var_os(BERTHD_ENV) {
        let code = berth_daemon::main_with_args(vec!["berthd".into(), "--config".into(), cfg]);
        std::process::exit(code);
    }
}

/// berthd as a child process (this test binary, re-executed), stopped on drop.
pub struct Berthd {
    child: Child,
    pub socket: PathBuf,
}

impl Drop for Berthd {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real berthd on `dir`, answering on `<dir>/state/berthd.sock`.
pub async fn start_berthd(dir: &Path) -> Berthd {
    let extra = "[plugins.\"berth.gc.v1.scheduler\"]\ninterval_secs = 0\n";
    let cfg = berth_test_support::support::write_berthd_config(dir, extra);
    let log = std::fs::File::create(dir.join("berthd.log")).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "berthd_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(BERTHD_ENV, &cfg)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut d = Berthd {
        child,
        socket: dir.join("state/berthd.sock"),
    };
    let started = Instant::now();
    let address = d.socket.display().to_string();
    while started.elapsed() < Duration::from_secs(30) {
        if berth_api::client::version(&address, Duration::from_secs(2))
            .await
            .is_ok()
        {
            return d;
        }
        if let Some(status) = d.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(dir.join("berthd.log")).unwrap_or_default();
            panic!("berthd exited early: {status}\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("berthd did not answer within 30 s");
}

/// A stand-in for init's System service: init is PID 1 and cannot run on a host, so the
/// routing tests talk to this small real ttrpc server with canned answers on a socket of
/// their own. FollowLog sends `follow_records` records, then (when `follow_forever`) keeps
/// the stream open without sending more.
pub struct FakeSystem {
    pub follow_records: u64,
    pub follow_forever: bool,
}

#[async_trait]
impl system_ttrpc::System for FakeSystem {
    async fn status(
        &self,
        _: &TtrpcContext,
        _: system::StatusRequest,
    ) -> ttrpc::Result<system::StatusResponse> {
        Ok(system::StatusResponse {
            version: "stand-in".into(),
            ..Default::default()
        })
    }

    async fn reboot(
        &self,
        _: &TtrpcContext,
        _: system::PowerRequest,
    ) -> ttrpc::Result<system::PowerResponse> {
        Ok(system::PowerResponse::new())
    }

    async fn follow_log(
        &self,
        _: &TtrpcContext,
        _: system::LogRequest,
        sink: ttrpc::r#async::ServerStreamSender<system::LogRecord>,
    ) -> ttrpc::Result<()> {
        for seq in 0..self.follow_records {
            let r = system::LogRecord {
                seq,
                message: format!("record {seq}"),
                ..Default::default()
            };
            sink.send(&r).await?;
        }
        if self.follow_forever {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

/// The stand-in serving on `path`; keep the server alive as long as it is needed.
pub async fn start_system(path: &Path, fake: FakeSystem) -> ttrpc::r#async::Server {
    let mut server = ttrpc::r#async::Server::new()
        .bind(&format!("unix://{}", path.display()))
        .unwrap()
        .register_service(system_ttrpc::create_system(Arc::new(fake)));
    server.start().await.unwrap();
    server
}

/// A listener on 127.0.0.1 (any port) in this runtime, forwarding to `backends`.
pub struct Node {
    pub addr: SocketAddr,
    pub handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts a listener with `limits` and `live`.
pub async fn start_node(backends: Backends, limits: Limits, live: Live) -> Node {
    let cfg = ListenerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        backends,
        limits,
    };
    let listener = Listener::bind(cfg, live).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = listener.handle();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(listener.serve(async move {
        let _ = rx.await;
    }));
    Node {
        addr,
        handle,
        stop: Some(tx),
    }
}

/// A berthd, a System stand-in and a listener in front of both, in `dir`.
pub struct World {
    pub node: Node,
    pub berthd: Berthd,
    _system: ttrpc::r#async::Server,
}

/// Starts a [`World`] with `limits` and the stand-in `fake`.
pub async fn start_world(dir: &Path, limits: Limits, fake: FakeSystem) -> World {
    let berthd = start_berthd(dir).await;
    let init = dir.join("init.sock");
    let system = start_system(&init, fake).await;
    let backends = Backends {
        berthd: berthd.socket.clone(),
        init,
    };
    let node = start_node(backends, limits, node_live(DenyList::default())).await;
    World {
        node,
        berthd,
        _system: system,
    }
}

/// A ttrpc client of `node` with `who`'s certificate, checking the name `NODE`.
pub async fn connect(node: &Node, who: &Issued) -> ttrpc::r#async::Client {
    berth_remote::client::connect(
        &node.addr.to_string(),
        NODE,
        &client_creds(who),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
}

/// A context with a 10 s timeout in namespace `default`.
pub fn ctx() -> ttrpc::context::Context {
    berth_api::keys::context("default", Duration::from_secs(10))
}

/// `Version` over `c`.
pub async fn version(c: &ttrpc::r#async::Client) -> ttrpc::Result<version::VersionResponse> {
    version_ttrpc::VersionClient::new(c.clone())
        .version(ctx(), &version::VersionRequest::new())
        .await
}

/// A ttrpc error's code and message (panics on transport errors).
pub fn status(e: ttrpc::Error) -> (ttrpc::Code, String) {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message),
        other => panic!("expected a status, got {other:?}"),
    }
}

/// The log lines written so far (every test's), captured from `tracing`.
pub fn logs() -> String {
    String::from_utf8_lossy(&capture().lock().unwrap()).into_owned()
}

fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

struct Tee;

impl std::io::Write for Tee {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        capture().lock().unwrap().extend_from_slice(b);
        std::io::stderr().write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends this binary's `tracing` output to stderr and to [`logs`].
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Tee)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,berth_remote=debug",
        ))
        .try_init();
}

/// This process's resident set (VmRSS), KiB.
pub fn rss_kib() -> u64 {
    berth_test_support::host::rss_kib(std::process::id()).unwrap()
}
