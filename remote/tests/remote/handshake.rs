//! Who gets in: certificates of another CA, expired, not yet valid or without clientAuth are
//! refused at the handshake; plaintext gets a handshake failure and nothing else; the client
//! refuses a node certificate for another name; denied serials are refused, and a reload that
//! denies a serial closes its open connection.

use std::time::{Duration, Instant};

use berth_api::proto::{system, system_ttrpc};
use berth_remote::client::{connect_tls, ConnectError};
use berth_remote::pki::{Ca, Validity};
use berth_remote::roles::Role;
use berth_remote::tls::{server_config, Credentials};
use berth_remote::{Backends, DenyList, Limits, Live};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A ttrpc Version request frame on stream 1.
fn version_frame() -> Vec<u8> {
    use protobuf::Message as _;
    let mut req = ttrpc::Request::new();
    req.service = "berth.services.version.v1.Version".into();
    req.method = "Version".into();
    let payload = req.write_to_bytes().unwrap();
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&[1, 0]);
    f.extend_from_slice(&payload);
    f
}

/// What a client with `creds` sees: the handshake error, or (TLS 1.3: the client finishes
/// before the server has checked its certificate) the error or end on its first read. Panics
/// if any data comes back.
async fn refusal(node: &Node, creds: &Credentials) -> String {
    let addr = node.addr.to_string();
    match connect_tls(&addr, NODE, creds, Duration::from_secs(10)).await {
        Err(e) => berth_api::errdefs::chain(&e),
        Ok(mut tls) => {
            let _ = tls.write_all(&version_frame()).await;
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
                Ok(Ok(0)) => "closed without a word".into(),
                Ok(Ok(n)) => panic!("a refused client read {n} bytes: {:?}", &buf[..n]),
                Ok(Err(e)) => e.to_string(),
                Err(_) => panic!("a refused client hung"),
            }
        }
    }
}

/// Other CA, expired, not yet valid, and a node certificate (serverAuth only) offered as a
/// client certificate: each refused by the handshake, counted, and nothing forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_expired_not_yet_valid_and_non_client_certificates_are_refused() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        berthd: dir.path().join("berthd.sock"),
        init: dir.path().join("init.sock"),
    };
    let node = start_node(backends, Limits::default(), node_live(DenyList::default())).await;
    let f = fleet();
    let now = time::OffsetDateTime::now_utc();
    let day = Duration::from_secs(86_400);
    let other = Ca::create("another fleet", Validity::days(1)).unwrap();
    let cases = [
        (
            "other CA",
            creds(
                f.ca.cert_pem(),
                &other
                    .issue_client("eve", Role::Admin, Validity::days(1))
                    .unwrap(),
            ),
        ),
        (
            "expired",
            client_creds(
                &f.ca
                    .issue_client(
                        "old",
                        Role::Admin,
                        Validity::between(now - day * 10, now - day).unwrap(),
                    )
                    .unwrap(),
            ),
        ),
        (
            "not yet valid",
            client_creds(
                &f.ca
                    .issue_client(
                        "early",
                        Role::Admin,
                        Validity::between(now + day, now + day * 10).unwrap(),
                    )
                    .unwrap(),
            ),
        ),
        ("node certificate as a client", client_creds(&f.node_b)),
    ];
    for (what, c) in cases {
        let before = node.handle.stats().handshake_failed;
        let t = Instant::now();
        let seen = refusal(&node, &c).await;
        // The server counts after its side of the handshake ends; give it a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while node.handle.stats().handshake_failed == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("{what}: refused in {:?}: {seen}", t.elapsed());
        assert_eq!(
            node.handle.stats().handshake_failed,
            before + 1,
            "{what}: {seen}"
        );
        assert_eq!(node.handle.stats().open, 0, "{what}");
    }
}

/// A client that speaks ttrpc in plaintext gets the TLS failure (at most an alert record)
/// and the end of the connection, never a ttrpc frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_gets_the_handshake_failure_and_nothing_else() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends {
        berthd: dir.path().join("berthd.sock"),
        init: dir.path().join("init.sock"),
    };
    let node = start_node(backends, Limits::default(), node_live(DenyList::default())).await;
    let mut tcp = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    tcp.write_all(&version_frame()).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the listener kept a plaintext client");
    println!("plaintext client read {} bytes: {got:02x?}", got.len());
    // Nothing, or one TLS alert record (content type 21).
    assert!(
        got.is_empty() || (got[0] == 0x15 && got.len() <= 7),
        "{got:02x?}"
    );
    assert_eq!(node.handle.stats().handshake_failed, 1);
}

/// The client checks the node's certificate against the name it meant: node-b's certificate
/// (same fleet CA) served where node-a was meant is refused; the right name, and an IP
/// address in the SANs, are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_checks_the_node_name() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let f = fleet();
    let backends = Backends {
        berthd: dir.path().join("berthd.sock"),
        init: dir.path().join("init.sock"),
    };
    let b_live = Live {
        tls: server_config(&creds(f.ca.cert_pem(), &f.node_b)).unwrap(),
        deny: DenyList::default(),
    };
    let impostor = start_node(backends.clone(), Limits::default(), b_live).await;
    let admin = client_creds(&f.admin);
    let addr = impostor.addr.to_string();
    match connect_tls(&addr, NODE, &admin, Duration::from_secs(10)).await {
        Err(ConnectError::Handshake { source, .. }) => {
            println!("node-b's certificate for node-a: {source}");
            assert!(
                source.to_string().contains("not valid for name"),
                "{source}"
            );
        }
        other => panic!(
            "node-b's certificate accepted for node-a: {:?}",
            other.map(|_| ())
        ),
    }
    connect_tls(&addr, "node-b", &admin, Duration::from_secs(10))
        .await
        .unwrap();
    let real = start_node(backends, Limits::default(), node_live(DenyList::default())).await;
    connect_tls(
        &real.addr.to_string(),
        "127.0.0.1",
        &admin,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
}

/// A serial on the deny list is refused (its first call answered PERMISSION_DENIED naming
/// the serial); a reload that denies an open connection's serial closes it, its open stream
/// answered PERMISSION_DENIED, while other certificates keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_serials_are_refused_and_a_reload_closes_their_connections() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSystem {
        follow_records: 1,
        follow_forever: true,
    };
    let w = start_world(dir.path(), Limits::default(), fake).await;
    let f = fleet();
    let mallory =
        f.ca.issue_client("mallory", Role::Admin, Validity::days(1))
            .unwrap();
    let deny = DenyList::parse([mallory.serial.as_str()]).unwrap();
    w.node.handle.set_deny_list(deny);

    let m = connect(&w.node, &mallory).await;
    let (code, msg) = status(version(&m).await.unwrap_err());
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains(mallory.serial.as_str()), "{msg}");
    println!("denied at connect: {msg}");

    let admin = connect(&w.node, &f.admin).await;
    let mut follow = system_ttrpc::SystemClient::new(admin.clone())
        .follow_log(ctx(), &system::LogRequest::new())
        .await
        .unwrap();
    assert_eq!(follow.recv().await.unwrap().unwrap().seq, 0);
    let reader = connect(&w.node, &f.reader).await;
    version(&reader).await.unwrap();

    let t = Instant::now();
    let spelled = f.admin.serial.as_str().to_uppercase();
    w.node
        .handle
        .set_deny_list(DenyList::parse([mallory.serial.as_str(), spelled.as_str()]).unwrap());
    let r = tokio::time::timeout(Duration::from_secs(10), follow.recv())
        .await
        .expect("the open stream of a denied serial was not ended");
    let (code, msg) = status(r.unwrap_err());
    println!(
        "open stream ended {:?} after the reload: {msg}",
        t.elapsed()
    );
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(version(&admin).await.is_err());
    let again = connect(&w.node, &f.admin).await;
    assert_eq!(
        status(version(&again).await.unwrap_err()).0,
        ttrpc::Code::PERMISSION_DENIED
    );
    version(&reader).await.unwrap();
    assert!(
        w.node.handle.stats().denied >= 3,
        "{:?}",
        w.node.handle.stats()
    );
}
