//! `berth-fetch`'s pinning against a real TLS server on loopback: the server's own
//! certificate pinned, the CA of the chain it sends pinned, a wrong pin refused with the
//! fingerprints the server sent, and the refusal of a client certificate reaching the client
//! as the node's words.

use std::sync::Arc;
use std::time::Duration;

use berth_api::proto::{version, version_ttrpc};
use berth_remote::certinfo::{certificates, fingerprint_der};
use berth_remote::client::connect_watched;
use berth_remote::fetch::get;
use berth_remote::pki::Validity;
use berth_remote::roles::Role;
use berth_remote::{Backends, DenyList, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// An HTTPS server on loopback answering every request with `body`, presenting node-a's
/// certificate followed by the fleet CA's.
async fn https_server(body: &'static str) -> std::net::SocketAddr {
    let f = fleet();
    let mut chain = certificates(&f.node.cert_pem).unwrap();
    chain.extend(certificates(f.ca.cert_pem()).unwrap());
    let key: rustls::pki_types::PrivateKeyDer =
        rustls::pki_types::pem::PemObject::from_pem_slice(f.node.key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(berth_remote::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_certificate_or_its_ca_is_trusted_and_nothing_else() {
    let addr = https_server("[network]\nhostname = \"pxe\"\n").await;
    let url = format!("https://{addr}/node.toml");
    let f = fleet();
    let leaf = fingerprint_der(certificates(&f.node.cert_pem).unwrap()[0].as_ref());
    let ca = fingerprint_der(certificates(f.ca.cert_pem()).unwrap()[0].as_ref());
    let t = Duration::from_secs(10);
    let body = get(&url, &leaf, 1 << 20, t).await.unwrap();
    assert_eq!(body, b"[network]\nhostname = \"pxe\"\n");
    let body = get(
        &url,
        &ca.to_uppercase().replace("SHA256", "sha256"),
        1 << 20,
        t,
    )
    .await
    .unwrap();
    assert_eq!(body, b"[network]\nhostname = \"pxe\"\n");
    let other = format!("sha256:{}", "0".repeat(64));
    let err = get(&url, &other, 1 << 20, t).await.unwrap_err();
    println!("wrong pin: {}", err.message);
    assert!(!err.transient);
    assert!(
        err.message.contains("do not match the pin"),
        "{}",
        err.message
    );
    assert!(err.message.contains(&leaf) && err.message.contains(&ca));
    let err = get(&url, &leaf, 10, t).await.unwrap_err();
    assert!(
        err.message.contains("larger than 10 bytes"),
        "{}",
        err.message
    );
    let err = get(&format!("http://{addr}/"), &leaf, 10, t)
        .await
        .unwrap_err();
    assert!(!err.transient && err.message.contains("not an https:// URL"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = get(&format!("https://{closed}/"), &leaf, 10, t)
        .await
        .unwrap_err();
    assert!(err.transient, "{}", err.message);
}

/// TLS 1.3: the client's handshake ends before the node judges the client's certificate, so
/// the refusal arrives on the first read; the watched connection keeps the node's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_certificate_is_reported_as_a_refusal() {
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
    let expired =
        f.ca.issue_client(
            "old",
            Role::Admin,
            Validity::between(now - day * 10, now - day).unwrap(),
        )
        .unwrap();
    let (client, refusal) = connect_watched(
        &node.addr.to_string(),
        NODE,
        &client_creds(&expired),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let r = version_ttrpc::VersionClient::new(client)
        .version(
            ttrpc::context::with_timeout(10_000_000_000),
            &version::VersionRequest::new(),
        )
        .await;
    println!("call: {r:?}; refusal: {:?}", refusal.describe());
    assert!(r.is_err());
    let said = refusal.describe().expect("the refusal was kept");
    assert!(
        said.contains("refused this client's certificate") && said.contains("CertificateExpired"),
        "{said}"
    );
}
