//! Protocol edge cases of the relay, over an in-memory stream (no TLS) and a silent backend.

use std::sync::Arc;
use std::time::Duration;

use protobuf::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::config::DenyList;
use crate::frame::{Header, HEADER_LEN, MESSAGE_TYPE_DATA, MESSAGE_TYPE_RESPONSE};
use crate::identity::Serial;
use crate::roles::{Role, Roles};

fn request(stream_id: u32, service: &str, method: &str) -> Vec<u8> {
    let mut req = ttrpc::proto::Request::new();
    req.service = service.into();
    req.method = method.into();
    let payload = req.write_to_bytes().unwrap();
    let h = Header {
        length: payload.len() as u32,
        stream_id,
        kind: MESSAGE_TYPE_REQUEST,
        flags: 0,
    };
    [h.encode().to_vec(), payload].concat()
}

async fn read_frame(c: &mut DuplexStream) -> (Header, Vec<u8>) {
    let mut b = [0u8; HEADER_LEN];
    c.read_exact(&mut b).await.unwrap();
    let h = Header::parse(&b);
    let mut p = vec![0u8; h.length as usize];
    c.read_exact(&mut p).await.unwrap();
    (h, p)
}

/// A relay for a reader over an in-memory pipe, berthd being a socket that accepts and never
/// answers; returns the client's end and the relay's task.
async fn relay(dir: &std::path::Path) -> (DuplexStream, tokio::task::JoinHandle<End>) {
    let sock = dir.join("silent.sock");
    let silent = tokio::net::UnixListener::bind(&sock).unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let session = Arc::new(Session {
        identity: Identity {
            common_name: "t".into(),
            serial: Serial::from_bytes(&[7]),
            roles: Roles::of(&[Role::Reader]),
        },
        peer: "127.0.0.1:1".parse().unwrap(),
        backends: Backends {
            berthd: sock,
            init: dir.join("none.sock"),
        },
        limits: Limits::default(),
        budget: Arc::new(Semaphore::new(64 << 20)),
    });
    let live = Live {
        tls: Arc::new(
            rustls::ServerConfig::builder_with_provider(crate::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new())),
        ),
        deny: DenyList::default(),
    };
    let (_tx, rx) = watch::channel(Arc::new(live));
    let (client, server) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        let _keep = _tx;
        run(session, server, rx).await
    });
    (client, task)
}

#[tokio::test]
async fn data_for_no_open_stream_is_dropped_silently_and_even_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _task) = relay(dir.path()).await;
    let data = Header {
        length: 3,
        stream_id: 5,
        kind: MESSAGE_TYPE_DATA,
        flags: 0,
    };
    c.write_all(&data.encode()).await.unwrap();
    c.write_all(b"abc").await.unwrap();
    c.write_all(&request(2, "berth.services.version.v1.Version", "Version"))
        .await
        .unwrap();
    // The first frame back answers the even id: nothing was sent for stream 5.
    let (h, p) = tokio::time::timeout(Duration::from_secs(5), read_frame(&mut c))
        .await
        .unwrap();
    assert_eq!((h.stream_id, h.kind), (2, MESSAGE_TYPE_RESPONSE));
    assert_eq!(
        crate::frame::response_status(&p).0,
        ttrpc::Code::INVALID_ARGUMENT
    );
}

#[tokio::test]
async fn a_response_frame_or_a_reused_stream_id_from_the_client_ends_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, task) = relay(dir.path()).await;
    let resp = Header {
        length: 0,
        stream_id: 1,
        kind: MESSAGE_TYPE_RESPONSE,
        flags: 0,
    };
    c.write_all(&resp.encode()).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(end, End::Protocol(_)), "{end}");

    let dir = tempfile::tempdir().unwrap();
    let (mut c, task) = relay(dir.path()).await;
    let version = request(1, "berth.services.version.v1.Version", "Version");
    c.write_all(&version).await.unwrap();
    c.write_all(&version).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end, End::Protocol("stream 1 opened twice".into()));
}
