//! Round trips over the remote API against the local socket (reported, never asserted):
//! `version` and `images ls` (Images.List), and a whole connect (TCP + TLS 1.3 handshake).

use std::time::{Duration, Instant};

use berth_api::proto::{images, images_ttrpc};
use berth_remote::Limits;
use berth_test_support::host::median;

use crate::common::*;

async fn timed<F, Fut>(n: usize, mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed());
    }
    v.sort();
    let p90 = v[v.len() * 9 / 10];
    (median(v), p90)
}

/// `cargo test -p berth-remote --test remote --release -- --ignored bench_ --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_round_trips_remote_vs_local() {
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
    let local = ttrpc::r#async::Client::connect(&format!("unix://{}", w.berthd.socket.display()))
        .await
        .unwrap();
    let remote = connect(&w.node, &fleet().reader).await;
    let n = 300;
    for (name, c) in [("local socket", &local), ("remote API", &remote)] {
        let (m, p90) = timed(n, || async {
            version(c).await.unwrap();
        })
        .await;
        println!("version       {name:<12}: median {m:?}, p90 {p90:?} ({n} calls)");
        let ic = images_ttrpc::ImagesClient::new(c.clone());
        let (m, p90) = timed(n, || async {
            ic.list(ctx(), &images::ListImagesRequest::new())
                .await
                .unwrap();
        })
        .await;
        println!("images ls     {name:<12}: median {m:?}, p90 {p90:?} ({n} calls)");
    }
    let addr = w.node.addr.to_string();
    let creds = client_creds(&fleet().reader);
    let (m, p90) = timed(50, || async {
        let c = berth_remote::client::connect(&addr, NODE, &creds, Duration::from_secs(10))
            .await
            .unwrap();
        version(&c).await.unwrap();
    })
    .await;
    println!("connect+version remote API  : median {m:?}, p90 {p90:?} (50 connections)");
}
