//! Defences under abuse (loopback only, bounded): a 1 GiB frame header, idle and slowloris
//! clients beside an admin, the timeouts, the connection cap and the per-connection stream
//! cap. Timings are printed, never asserted beyond hang guards.

use std::time::{Duration, Instant};

use berth_api::proto::{system, system_ttrpc};
use berth_remote::client::connect_tls;
use berth_remote::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A 1 GiB Request header is answered RESOURCE_EXHAUSTED and the connection closed, without
/// the listener allocating the payload: the largest single allocation of this process (the
/// listener runs in it) stays small and its RSS barely moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gib_frame_header_is_refused_without_allocating_it() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let w = start_world(
        dir.path(),
        Limits::default(),
        FakeSystem {
            follow_records: 0,
            follow_forever: false,
        },
    )
    .await;
    let mut tls = connect_tls(
        &w.node.addr.to_string(),
        NODE,
        &client_creds(&fleet().admin),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let rss_before = rss_kib();
    crate::LARGEST.store(0, std::sync::atomic::Ordering::Relaxed);
    // length 1 GiB, stream 1, Request, no flags — and then nothing.
    tls.write_all(&[0x40, 0, 0, 0, 0, 0, 0, 1, 1, 0])
        .await
        .unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the listener waited for the 1 GiB payload");
    let largest = crate::LARGEST.load(std::sync::atomic::Ordering::Relaxed);
    let rss_after = rss_kib();
    println!(
        "1 GiB header: RSS {rss_before} KiB before, {rss_after} KiB after (+{} KiB); largest single allocation meanwhile {largest} bytes",
        rss_after.saturating_sub(rss_before)
    );
    assert!(got.len() > 10, "no answer: {got:?}");
    let (code, msg) = berth_remote::frame::response_status(&got[10..]);
    assert_eq!(code, ttrpc::Code::RESOURCE_EXHAUSTED);
    assert!(msg.contains("1073741824"), "{msg}");
    assert!(largest < 64 << 20, "an allocation of {largest} bytes");
    assert!(
        rss_after < rss_before + 256 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// Idle TLS connections and slowloris clients (silent before the handshake, or trickling a
/// frame header after it) are held while an admin connects and calls `version`; its latency
/// is printed (a hang guard only).
async fn idle_and_slowloris(idle: usize, slow: usize) {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let w = start_world(
        dir.path(),
        Limits::default(),
        FakeSystem {
            follow_records: 0,
            follow_forever: false,
        },
    )
    .await;
    let addr = w.node.addr.to_string();
    let reader = client_creds(&fleet().reader);
    let t = Instant::now();
    let mut held = Vec::new();
    for _ in 0..idle {
        held.push(
            connect_tls(&addr, NODE, &reader, Duration::from_secs(30))
                .await
                .unwrap(),
        );
    }
    let opened = t.elapsed();
    let mut silent = Vec::new();
    for _ in 0..slow / 2 {
        let mut tcp = tokio::net::TcpStream::connect(w.node.addr).await.unwrap();
        tcp.write_all(&[0x16]).await.unwrap(); // the first byte of a ClientHello, then nothing
        silent.push(tcp);
    }
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tricklers = Vec::new();
    for _ in 0..slow - slow / 2 {
        let mut tls = connect_tls(&addr, NODE, &reader, Duration::from_secs(30))
            .await
            .unwrap();
        let mut stop = stop.subscribe();
        tricklers.push(tokio::spawn(async move {
            // One header byte every 200 ms, bounded by the test's end.
            for b in [0u8, 0, 0, 64, 0, 0, 0, 1, 1] {
                tokio::select! {
                    _ = stop.recv() => return,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                if tls.write_all(&[b]).await.is_err() {
                    return;
                }
            }
        }));
    }
    let t = Instant::now();
    let admin = connect(&w.node, &fleet().admin).await;
    let connected = t.elapsed();
    let mut lat = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        tokio::time::timeout(Duration::from_secs(30), version(&admin))
            .await
            .expect("version hung")
            .unwrap();
        lat.push(t.elapsed());
    }
    let stats = w.node.handle.stats();
    println!(
        "{idle} idle TLS connections (opened in {opened:?}) + {slow} slowloris: admin connect {connected:?}, version {lat:?}; listener {stats:?}"
    );
    assert!(stats.open as usize > idle, "{stats:?}");
    let _ = stop.send(());
    for t in tricklers {
        let _ = t.await;
    }
    drop(held);
}

/// The load: 200 idle TLS connections and 20 slowloris clients while an admin
/// connects and calls `version` (about a second on 2 cores, so in the default run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_200_idle_and_20_slowloris_clients_do_not_starve_an_admin() {
    idle_and_slowloris(200, 20).await;
}

async fn closed_within(
    what: &str,
    rd: &mut (impl AsyncReadExt + Unpin),
    bound: Duration,
) -> Duration {
    let t = Instant::now();
    let mut b = [0u8; 256];
    loop {
        match tokio::time::timeout(bound, rd.read(&mut b)).await {
            Err(_) => panic!("{what}: still open after {bound:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return t.elapsed(),
            Ok(Ok(_)) => {} // an alert or a refusal frame; the end comes next
        }
    }
}

/// With short limits: a silent client before the handshake, a frame trickled after it and an
/// idle connection are each closed; a quiet connection with an open stream is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_frame_and_idle_timeouts_close_connections() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        frame_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let w = start_world(
        dir.path(),
        limits,
        FakeSystem {
            follow_records: 1,
            follow_forever: true,
        },
    )
    .await;
    let addr = w.node.addr.to_string();
    let reader = client_creds(&fleet().reader);
    let bound = Duration::from_secs(10);

    let mut silent = tokio::net::TcpStream::connect(w.node.addr).await.unwrap();
    let t = closed_within("silent before the handshake", &mut silent, bound).await;
    println!("handshake timeout closed a silent client after {t:?}");

    let mut slow = connect_tls(&addr, NODE, &reader, bound).await.unwrap();
    slow.write_all(&[0, 0]).await.unwrap();
    let t = closed_within("half a frame header", &mut slow, bound).await;
    println!("frame timeout closed a trickling client after {t:?}");

    let mut idle = connect_tls(&addr, NODE, &reader, bound).await.unwrap();
    let t = closed_within("idle", &mut idle, bound).await;
    println!("idle timeout closed an idle connection after {t:?}");

    let admin = connect(&w.node, &fleet().admin).await;
    let mut follow = system_ttrpc::SystemClient::new(admin.clone())
        .follow_log(ctx(), &system::LogRequest::new())
        .await
        .unwrap();
    assert!(follow.recv().await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    version(&admin)
        .await
        .expect("a connection with an open stream was closed as idle");
}

/// Beyond `max_connections`, connections are closed on accept, before any TLS work; a
/// closed connection frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_early() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 3,
        ..Limits::default()
    };
    let w = start_world(
        dir.path(),
        limits,
        FakeSystem {
            follow_records: 0,
            follow_forever: false,
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&w.node, &fleet().admin).await);
    }
    for c in &held {
        version(c).await.unwrap();
    }
    let addr = w.node.addr.to_string();
    let admin = client_creds(&fleet().admin);
    let r = connect_tls(&addr, NODE, &admin, Duration::from_secs(10)).await;
    assert!(r.is_err(), "a connection beyond the cap was served");
    println!(
        "beyond the cap: {}",
        berth_api::errdefs::chain(&r.unwrap_err())
    );
    assert_eq!(w.node.handle.stats().refused_at_cap, 1);
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(c) =
            berth_remote::client::connect(&addr, NODE, &admin, Duration::from_secs(5)).await
        {
            if version(&c).await.is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "a freed place was not reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A call beyond `max_streams` open streams on one connection is answered
/// RESOURCE_EXHAUSTED; the open streams stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_connection_are_capped() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_streams: 2,
        ..Limits::default()
    };
    let w = start_world(
        dir.path(),
        limits,
        FakeSystem {
            follow_records: 1,
            follow_forever: true,
        },
    )
    .await;
    let admin = connect(&w.node, &fleet().admin).await;
    let sys = system_ttrpc::SystemClient::new(admin.clone());
    let mut a = sys
        .follow_log(ctx(), &system::LogRequest::new())
        .await
        .unwrap();
    let mut b = sys
        .follow_log(ctx(), &system::LogRequest::new())
        .await
        .unwrap();
    assert!(a.recv().await.unwrap().is_some() && b.recv().await.unwrap().is_some());
    let (code, msg) = status(version(&admin).await.unwrap_err());
    assert_eq!(code, ttrpc::Code::RESOURCE_EXHAUSTED);
    println!("third stream: {msg}");
    let other = connect(&w.node, &fleet().admin).await;
    version(&other).await.unwrap();
}
