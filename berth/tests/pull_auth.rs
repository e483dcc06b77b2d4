//! berthd's Pull service with credentials in the request (CRI's `AuthConfig`) and the error
//! class of a missing image, against a real `docker-registry` on loopback with htpasswd auth
//! and no credentials configured in berthd: the request's credentials are used for that pull
//! only (the next pull without them is refused again), never logged; a credential for
//! another server is not sent; a tag no endpoint has is NOT_FOUND, not UNAVAILABLE.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use berth_api::proto::{pull as ppb, pull_ttrpc};
use berth_test_support::registry::{busybox_layout, push_layout, start_registry, RegistryConfig};
use berth_test_support::{host, support};

const PASSWORD: &str = "s3cret-for-berth-only";

fn pull(
    rt: &tokio::runtime::Runtime,
    c: &pull_ttrpc::PullClient,
    reference: &str,
    auth: Option<ppb::PullAuth>,
) -> Result<ppb::PullResult, ttrpc::Error> {
    rt.block_on(async {
        let req = ppb::PullRequest {
            reference: reference.to_owned(),
            auth: auth.into(),
            ..Default::default()
        };
        let mut ctx = berth_api::keys::context("default", Duration::from_secs(60));
        ctx.timeout_nano = 0;
        let mut s = c.pull(ctx, &req).await?;
        let mut result = None;
        while let Some(ev) = s.recv().await? {
            if ev.done {
                result = ev.result.into_option();
            }
        }
        Ok(result.expect("a result"))
    })
}

fn code(e: &ttrpc::Error) -> ttrpc::Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        _ => ttrpc::Code::UNKNOWN,
    }
}

#[test]
fn request_credentials_are_used_for_that_pull_only() -> Result<()> {
    if !host::root_and_tools(
        "pull credentials",
        &["docker-registry", "skopeo", "umoci", "htpasswd"],
    )? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let htpasswd = work.path().join("htpasswd");
    let line = host::run(Command::new("htpasswd").args(["-Bbn", "kube", PASSWORD]))?;
    std::fs::write(&htpasswd, line.trim())?;
    let reg = start_registry(
        &work.path().join("registry"),
        RegistryConfig {
            htpasswd: Some(&htpasswd),
            ..Default::default()
        },
    )?;
    let layout = busybox_layout(&work.path().join("img"))?;
    let reference = format!("{}/private/app:v1", reg.addr);
    push_layout(
        &layout,
        "v1",
        &reference,
        Some(&format!("kube:{PASSWORD}")),
        None,
    )?;

    let log = work.path().join("berthd.log");
    let d = support::try_start_berthd_config(work.path(), &[], "", Some(&log))
        .map_err(|s| anyhow::anyhow!("berthd exited: {s}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let inner = rt.block_on(berth_api::client::connect(
        &d.socket.display().to_string(),
        Duration::from_secs(10),
    ))?;
    let c = pull_ttrpc::PullClient::new(inner);

    let e = pull(&rt, &c, &reference, None).unwrap_err();
    println!("no credentials: {e}");
    assert!(e.to_string().contains("no credentials for"), "{e}");

    // Credentials for another server are not sent to this one.
    let elsewhere = ppb::PullAuth {
        username: "kube".into(),
        password: PASSWORD.into(),
        server_address: "other.registry.example".into(),
        ..Default::default()
    };
    let e = pull(&rt, &c, &reference, Some(elsewhere)).unwrap_err();
    assert!(e.to_string().contains("no credentials for"), "{e}");

    let wrong = ppb::PullAuth {
        username: "kube".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let e = pull(&rt, &c, &reference, Some(wrong)).unwrap_err();
    println!("wrong password: {e}");
    assert!(e.to_string().contains("the pull request"), "{e}");

    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("kube:{PASSWORD}"));
    let right = ppb::PullAuth {
        auth: b64,
        server_address: format!("http://{}", reg.addr),
        ..Default::default()
    };
    let r = pull(&rt, &c, &reference, Some(right)).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("pulled with the request's credentials: {}", r.name);
    assert_eq!(r.name, reference);

    // Not remembered: the same pull without them is refused again (the manifest is fetched
    // again to resolve the tag).
    let e = pull(&rt, &c, &reference, None).unwrap_err();
    assert!(e.to_string().contains("no credentials for"), "{e}");

    // A tag no endpoint has: NOT_FOUND (kubelet's "image not found"), not UNAVAILABLE.
    let user_pass = ppb::PullAuth {
        username: "kube".into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    let missing = format!("{}/private/app:nope", reg.addr);
    let e = pull(&rt, &c, &missing, Some(user_pass)).unwrap_err();
    println!("missing tag: {e}");
    assert_eq!(code(&e), ttrpc::Code::NOT_FOUND, "{e}");
    // An unreachable registry stays UNAVAILABLE.
    let port = berth_test_support::registry::free_port();
    let e = pull(&rt, &c, &format!("127.0.0.1:{port}/x/y:z"), None).unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::UNAVAILABLE, "{e}");

    drop(d);
    let text = std::fs::read_to_string(&log)?;
    assert!(
        !text.contains(PASSWORD),
        "the password reached berthd's log"
    );
    Ok(())
}
