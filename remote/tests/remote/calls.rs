//! Calls through the listener to a real berthd and the System stand-in: roles, routing by
//! service on one connection, unary and streaming methods of every kind, refusals, audit.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_api::proto::{
    containers, containers_ttrpc, content, content_ttrpc, images, images_ttrpc, shim, shim_ttrpc,
    system, system_ttrpc, tasks, tasks_ttrpc, transfer, transfer_ttrpc,
};
use berth_remote::{Backends, DenyList, Limits};

use crate::common::*;

fn no_follow() -> FakeSystem {
    FakeSystem {
        follow_records: 3,
        follow_forever: false,
    }
}

fn tiny_archive(name: &str) -> Vec<u8> {
    use berth_test_support::support::{archive, layer, manifest};
    let mut blobs = BTreeMap::new();
    let l = layer(&[("hello.txt", b"hello from the remote API\n")]);
    let m = manifest(&[&l], &mut blobs);
    archive(&[(name, m)], &blobs)
}

/// Admin `version` answers as the local socket does; an operator's `Transfer.Import` (a
/// client stream) lands an image that a reader's `images ls` (Images.List) then shows, the
/// same list as the local socket's; the import has its audit line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_version_operator_import_and_reader_images_ls_answer_as_locally() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let w = start_world(dir.path(), Limits::default(), no_follow()).await;
    let local = w.berthd.socket.display().to_string();

    let admin = connect(&w.node, &fleet().admin).await;
    let v = version(&admin).await.unwrap();
    let here = berth_api::client::version(&local, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((v.version, v.revision), here);

    let operator = connect(&w.node, &fleet().operator).await;
    let t = transfer_ttrpc::TransferClient::new(operator);
    let mut up = t.import(ctx()).await.unwrap();
    let data = tiny_archive("example.com/remote/tiny:1");
    for (i, chunk) in data.chunks(4096).enumerate() {
        let c = transfer::ImportChunk {
            data: chunk.to_vec(),
            no_unpack: i == 0,
            ..Default::default()
        };
        up.send(&c).await.unwrap();
    }
    let imported = up.close_and_recv().await.unwrap();
    assert_eq!(imported.images[0].name, "example.com/remote/tiny:1");

    let reader = connect(&w.node, &fleet().reader).await;
    let req = images::ListImagesRequest::new();
    let remote = images_ttrpc::ImagesClient::new(reader)
        .list(ctx(), &req)
        .await
        .unwrap();
    let lc = ttrpc::r#async::Client::connect(&format!("unix://{local}"))
        .await
        .unwrap();
    let there = images_ttrpc::ImagesClient::new(lc)
        .list(ctx(), &req)
        .await
        .unwrap();
    assert_eq!(remote, there);
    assert_eq!(remote.images.len(), 1);

    let logs = logs();
    assert!(
        logs.lines().any(|l| l.contains("cn=otto")
            && l.contains("role=operator")
            && l.contains("/berth.services.transfer.v1.Transfer/Import")
            && l.contains("result=OK")
            && l.contains(&format!("serial={}", fleet().operator.serial))),
        "no audit line for the import:\n{logs}"
    );
}

/// A reader's Containers.Create and Tasks.Create are PERMISSION_DENIED naming the role and
/// the method, with an audit line each, and the connection keeps serving the reader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_creates_are_refused_naming_role_and_method() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let w = start_world(dir.path(), Limits::default(), no_follow()).await;
    let reader = connect(&w.node, &fleet().reader).await;

    let e = containers_ttrpc::ContainersClient::new(reader.clone())
        .create(ctx(), &containers::CreateContainerRequest::new())
        .await
        .unwrap_err();
    let (code, msg) = status(e);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains("role reader"), "{msg}");
    assert!(
        msg.contains("/berth.services.containers.v1.Containers/Create"),
        "{msg}"
    );
    println!("refusal: {msg}");

    let e = tasks_ttrpc::TasksClient::new(reader.clone())
        .create(ctx(), &tasks::CreateTaskRequest::new())
        .await
        .unwrap_err();
    let (code, msg) = status(e);
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(
        msg.contains("role reader") && msg.contains("/berth.services.tasks.v1.Tasks/Create"),
        "{msg}"
    );

    // A refused stream (Content.Write, bidi) is refused as cleanly.
    let cc = content_ttrpc::ContentClient::new(reader.clone());
    let mut s = cc.write(ctx()).await.unwrap();
    let _ = s
        .send(&content::WriteContentRequest {
            ref_: "r".into(),
            ..Default::default()
        })
        .await;
    let (code, _) = status(s.recv().await.unwrap_err());
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);

    version(&reader).await.unwrap();
    let logs = logs();
    assert!(
        logs.lines().any(|l| l.contains("cn=rita")
            && l.contains("/berth.services.tasks.v1.Tasks/Create")
            && l.contains("result=PERMISSION_DENIED")),
        "no audit line for the refusal:\n{logs}"
    );
}

/// One client connection talks to both backends: System calls reach the stand-in (its
/// canned version), everything else berthd, interleaved, with a server stream (FollowLog)
/// open meanwhile. Operator reboot goes through with an audit line; reader reboot, a peer's
/// version, the shim's API and a method outside the table are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_reaches_init_and_berthd_and_streams_pass() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let w = start_world(dir.path(), Limits::default(), no_follow()).await;
    let admin = connect(&w.node, &fleet().admin).await;
    let sys = system_ttrpc::SystemClient::new(admin.clone());

    let mut follow = sys
        .follow_log(ctx(), &system::LogRequest::new())
        .await
        .unwrap();
    let status_resp = sys
        .status(ctx(), &system::StatusRequest::new())
        .await
        .unwrap();
    assert_eq!(status_resp.version, "stand-in");
    let v = version(&admin).await.unwrap();
    assert_ne!(v.version, "stand-in");
    let mut seqs = Vec::new();
    while let Some(r) = follow.recv().await.unwrap() {
        seqs.push(r.seq);
    }
    assert_eq!(seqs, vec![0, 1, 2]);

    // Content.Write (bidi) then Content.List (server stream) through berthd.
    let cc = content_ttrpc::ContentClient::new(admin.clone());
    let mut s = cc.write(ctx()).await.unwrap();
    s.send(&content::WriteContentRequest {
        action: content::WriteAction::COMMIT.into(),
        ref_: "remote-write".into(),
        data: b"bytes through the listener".to_vec(),
        ..Default::default()
    })
    .await
    .unwrap();
    let digest = s.recv().await.unwrap().digest;
    assert!(digest.starts_with("sha256:"), "{digest}");
    let reader = connect(&w.node, &fleet().reader).await;
    let mut list = content_ttrpc::ContentClient::new(reader.clone())
        .list(ctx(), &content::ListContentRequest::new())
        .await
        .unwrap();
    let mut found = false;
    while let Some(r) = list.recv().await.unwrap() {
        found |= r.info.iter().any(|i| i.digest == digest);
    }
    assert!(found, "{digest} not listed");

    let operator = connect(&w.node, &fleet().operator).await;
    system_ttrpc::SystemClient::new(operator)
        .reboot(ctx(), &system::PowerRequest::new())
        .await
        .unwrap();
    let (code, msg) = status(
        system_ttrpc::SystemClient::new(reader)
            .reboot(ctx(), &system::PowerRequest::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains("needs the operator role"), "{msg}");

    let peer = connect(&w.node, &fleet().peer).await;
    let (code, msg) = status(version(&peer).await.unwrap_err());
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains("role peer"), "{msg}");

    let (code, msg) = status(
        shim_ttrpc::ShimClient::new(admin.clone())
            .state(ctx(), &shim::StateRequest::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains("never reachable remotely"), "{msg}");

    let mut req = ttrpc::Request::new();
    req.service = "berth.services.version.v1.Version".into();
    req.method = "Nope".into();
    let (code, msg) = status(admin.request(req).await.unwrap_err());
    assert_eq!(code, ttrpc::Code::PERMISSION_DENIED);
    assert!(msg.contains("not in the remote API's role table"), "{msg}");

    let logs = logs();
    assert!(
        logs.lines().any(|l| l.contains("cn=otto")
            && l.contains("/berth.services.system.v1.System/Reboot")
            && l.contains("result=OK")),
        "no audit line for the reboot:\n{logs}"
    );
}

/// A backend that is not there answers UNAVAILABLE naming it; the other still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_backend_answers_unavailable() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let berthd = start_berthd(dir.path()).await;
    let backends = Backends {
        berthd: berthd.socket.clone(),
        init: dir.path().join("no-init.sock"),
    };
    let node = start_node(backends, Limits::default(), node_live(DenyList::default())).await;
    let admin = connect(&node, &fleet().admin).await;
    let (code, msg) = status(
        system_ttrpc::SystemClient::new(admin.clone())
            .status(ctx(), &system::StatusRequest::new())
            .await
            .unwrap_err(),
    );
    assert_eq!(code, ttrpc::Code::UNAVAILABLE);
    assert!(msg.contains("berth-init is unavailable"), "{msg}");
    version(&admin).await.unwrap();
}
