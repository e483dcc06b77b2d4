//! One namespace rule for every berthd service (issue 15): a request's namespace is
//! `berth-namespace`, else containerd's `containerd-namespace-ttrpc`, else `default`, and an
//! invalid name is INVALID_ARGUMENT naming it — in every service. Before the rule had one
//! home, the Snapshots service read only `berth-namespace`, so a containerd-style client
//! landed in different namespaces depending on the service.
//!
//! The services and methods come from the generated method table ([`methods::ALL`]), not from
//! a list written here, so a new service or method cannot escape the rule: every method of
//! every berthd service gets a default (empty) request through a raw ttrpc client, carrying
//! an invalid namespace only in containerd's key.

use std::collections::HashMap;
use std::time::Duration;

use berth_api::methods::{self, Method};
use berth_api::proto::{images, images_ttrpc, snapshots, snapshots_ttrpc};
use berth_test_support::support::{is_root, start_berthd, Berthd};
use ttrpc::r#async::Client;

/// containerd's namespace key, the one berth's own clients do not send.
const CONTAINERD_KEY: &str = "containerd-namespace-ttrpc";
/// Not an identifier: every namespaced method must refuse it.
const BAD: &str = "bad/ns";

/// Services of other processes, not berthd's: init's control API and a container's shim.
const OTHER_PROCESSES: &[&str] = &["berth.shim.v1.Shim", "berth.services.system.v1.System"];

/// Methods that are not namespaced, and why. For these the test asserts only that they do
/// not fail because of the namespace.
const NOT_NAMESPACED: &[(&str, &str)] = &[
    // Which berthd answers, and its plugins: the node's, not a namespace's.
    ("berth.services.version.v1.Version", "*"),
    ("berth.services.introspection.v1.Introspection", "*"),
    // The namespace is the request's subject, named in the message.
    ("berth.services.namespaces.v1.Namespaces", "*"),
    // berthd's configuration and registry settings are the node's.
    ("berth.services.config.v1.Config", "Reload"),
    ("berth.services.registry.v1.Registry", "ResolveHosts"),
    // A collection covers every namespace.
    ("berth.services.gc.v1.GC", "Collect"),
    // Ingests are keyed by their ref across namespaces; the write that commits one records it
    // in the request's namespace (Write is namespaced).
    ("berth.services.content.v1.Content", "Status"),
    ("berth.services.content.v1.Content", "ListStatuses"),
    ("berth.services.content.v1.Content", "Abort"),
    // Events carry their namespace; a subscriber sees every namespace's.
    ("berth.services.events.v1.Events", "Subscribe"),
];

fn namespaced(m: &Method) -> bool {
    !NOT_NAMESPACED
        .iter()
        .any(|(s, name)| *s == m.service && (*name == "*" || *name == m.method))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(d: &Berthd) -> Client {
    Client::connect(&format!("unix://{}", d.socket.display()))
        .await
        .unwrap()
}

/// What a method answered.
#[derive(Debug)]
enum Answer {
    Ok,
    /// An error status (code, message) or a transport error (as text, code UNKNOWN).
    Failed(ttrpc::Code, String),
    /// Nothing within the wait (a stream that waits for events).
    Pending,
}

fn answer<T>(r: ttrpc::Result<T>) -> Answer {
    match r {
        Ok(_) => Answer::Ok,
        Err(ttrpc::Error::RpcStatus(s)) => Answer::Failed(s.code(), s.message().to_owned()),
        // A stream the server ended without an error status is an answer too.
        Err(ttrpc::Error::Eof) => Answer::Ok,
        Err(e) => Answer::Failed(ttrpc::Code::UNKNOWN, e.to_string()),
    }
}

/// Sends `m` an empty request with `metadata`, opening streams the way the generated clients
/// do (a client stream gets one empty message and is closed), and returns its first answer.
async fn call(c: &Client, m: &Method, metadata: &HashMap<String, Vec<String>>) -> Answer {
    let req = ttrpc::Request {
        service: m.service.to_owned(),
        method: m.method.to_owned(),
        payload: Vec::new(),
        timeout_nano: Duration::from_secs(20).as_nanos() as i64,
        metadata: ttrpc::context::to_pb(metadata.clone()),
        ..Default::default()
    };
    if !m.client_stream && !m.server_stream {
        return answer(c.request(req).await);
    }
    let mut stream = match c.new_stream(req, m.client_stream, m.server_stream).await {
        Ok(s) => s,
        Err(e) => return answer(Err::<(), _>(e)),
    };
    if m.client_stream {
        // A server that refuses the call from its metadata answers at once and forgets the
        // stream; a message sent after that gets a second answer ("Stream is no longer
        // active") that can overtake the first. So wait for an early refusal first.
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), stream.recv()).await {
            return answer(r);
        }
        // The first message (empty), then the end of the client's half, for a server that
        // reads the stream before it judges the call.
        let _ = stream.send(Vec::new()).await;
        if !m.server_stream {
            let _ = stream.close_send().await;
        }
    }
    // Events.Subscribe answers only when an event comes; a refusal comes at once.
    match tokio::time::timeout(Duration::from_secs(3), stream.recv()).await {
        Ok(r) => answer(r),
        Err(_) => Answer::Pending,
    }
}

fn berth_ctx(ns: &str) -> ttrpc::context::Context {
    berth_api::keys::context(ns, Duration::from_secs(20))
}

/// The images of `ns`, asked with berth's own key.
async fn image_names(c: &images_ttrpc::ImagesClient, ns: &str) -> Vec<String> {
    c.list(berth_ctx(ns), &images::ListImagesRequest::default())
        .await
        .unwrap()
        .images
        .into_iter()
        .map(|i| i.name)
        .collect()
}

/// The snapshot keys of `ns` (default snapshotter), asked with berth's own key.
async fn snapshot_keys(c: &snapshots_ttrpc::SnapshotsClient, ns: &str) -> Vec<String> {
    c.list(berth_ctx(ns), &snapshots::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .info
        .into_iter()
        .map(|i| i.name)
        .collect()
}

fn md(key: &str, value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(key.to_owned(), vec![value.to_owned()])])
}

#[test]
fn every_namespaced_method_refuses_an_invalid_containerd_namespace() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = start_berthd(dir.path());
    let methods: Vec<&Method> = methods::ALL
        .iter()
        .filter(|m| !OTHER_PROCESSES.contains(&m.service))
        .collect();
    // Every entry of the exception list names a real method: a renamed method must not
    // silently leave it.
    for (s, name) in NOT_NAMESPACED {
        assert!(
            methods
                .iter()
                .any(|m| m.service == *s && (*name == "*" || m.method == *name)),
            "{s}/{name} is in NOT_NAMESPACED but not in the method table"
        );
    }
    let metadata = md(CONTAINERD_KEY, BAD);
    let mut wrong = Vec::new();
    let mut checked = 0;
    rt().block_on(async {
        let c = connect(&d).await;
        for m in &methods {
            let got = call(&c, m, &metadata).await;
            let refused = matches!(&got, Answer::Failed(ttrpc::Code::INVALID_ARGUMENT, msg) if msg.contains(BAD));
            let names_ns = matches!(&got, Answer::Failed(_, msg) if msg.contains(BAD));
            if namespaced(m) {
                checked += 1;
                if !refused {
                    wrong.push(format!("{}: namespaced, answered {got:?}", m.path()));
                }
            } else if names_ns {
                wrong.push(format!("{}: not namespaced, refused the namespace: {got:?}", m.path()));
            }
            println!("{} -> {got:?}", m.path());
        }
    });
    assert!(checked > 40, "only {checked} namespaced methods");
    assert!(
        wrong.is_empty(),
        "methods breaking the namespace rule:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn a_containerd_style_client_lands_in_one_namespace_across_services() {
    if !is_root() {
        eprintln!("skipped: berthd needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = start_berthd(dir.path());
    rt().block_on(async {
        let c = connect(&d).await;
        let containerd_ctx = || {
            let mut ctx = ttrpc::context::with_timeout(Duration::from_secs(20).as_nanos() as i64);
            ctx.add(CONTAINERD_KEY.to_owned(), "k8s.io".to_owned());
            ctx
        };
        let imgs = images_ttrpc::ImagesClient::new(c.clone());
        let snaps = snapshots_ttrpc::SnapshotsClient::new(c.clone());

        imgs.create(
            containerd_ctx(),
            &images::CreateImageRequest {
                image: Some(images::Image {
                    name: "k8s.io/pause:3.9".into(),
                    target: Some(images::Descriptor {
                        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                        digest: format!("sha256:{}", "0".repeat(64)),
                        size: 2,
                        ..Default::default()
                    })
                    .into(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        snaps
            .prepare(
                containerd_ctx(),
                &snapshots::PrepareSnapshotRequest {
                    key: "sandbox-rootfs".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();

        assert_eq!(image_names(&imgs, "k8s.io").await, ["k8s.io/pause:3.9"]);
        assert_eq!(snapshot_keys(&snaps, "k8s.io").await, ["sandbox-rootfs"]);
        assert!(image_names(&imgs, "default").await.is_empty());
        assert!(
            snapshot_keys(&snaps, "default").await.is_empty(),
            "the snapshot landed in \"default\": the Snapshots service ignored {CONTAINERD_KEY}"
        );
    });
}
