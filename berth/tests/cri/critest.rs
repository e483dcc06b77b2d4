//! critest against berth-cri, focused on what phase 1 implements. critest hard-codes public
//! test images (gcr.io/k8s-staging-cri-tools/*, registry.k8s.io/pause:3.9, k8s.gcr.io/…):
//! equivalents are built here from Debian's busybox with umoci (the users the image tests
//! check, distinct images where they must differ, one image under several tags where they
//! must not) and served by the loopback registry through berthd's mirror-only `_default`,
//! which keeps each reference's repository path. The one image pinned by a public digest
//! cannot be reproduced offline.

use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use berth_test_support::host;
use berth_test_support::registry::{busybox_layout, push_layout};

use crate::env::{self, Env};

const STAGING: &str = "k8s-staging-cri-tools";

/// (repository, tag, user, distinguishing env) of every image the focused specs pull.
fn images() -> Vec<(String, &'static str, &'static str, &'static str)> {
    let s = |r: &str| format!("{STAGING}/{r}");
    vec![
        (s("test-image-latest"), "latest", "", "IMG=latest"),
        (s("test-image-tag"), "test", "", "IMG=tag"),
        (s("test-image-tag"), "all", "", "IMG=all"),
        (s("test-image-user-uid"), "latest", "1002", "IMG=uid"),
        (
            s("test-image-user-username"),
            "latest",
            "www-data",
            "IMG=username",
        ),
        (
            s("test-image-user-uid-group"),
            "latest",
            "1003:users",
            "IMG=uidgroup",
        ),
        (
            s("test-image-user-username-group"),
            "latest",
            "www-data:users",
            "IMG=usernamegroup",
        ),
        (s("test-image-1"), "latest", "", "IMG=1"),
        (s("test-image-2"), "latest", "", "IMG=2"),
        (s("test-image-3"), "latest", "", "IMG=3"),
        (s("test-image-tags"), "1", "", "IMG=tags"),
        (s("test-image-tags"), "2", "", "IMG=tags"),
        (s("test-image-tags"), "3", "", "IMG=tags"),
        ("pause".to_owned(), "3.9", "", "IMG=pause"),
        // The container specs' image: they need CreateContainer (phase 2), and with the
        // image present they fail on that, not on the pull.
        (
            "e2e-test-images/busybox".to_owned(),
            "1.29-2",
            "",
            "IMG=busybox",
        ),
    ]
}

/// Builds and pushes [`images`]: one image per distinct (user, marker), pushed under every
/// tag that names it (`umoci config` stamps a new history entry, so a second build of the
/// same settings would be another image).
fn push_images(env: &Env) -> Result<()> {
    let layout = busybox_layout(&env.path("critest-images"))?;
    let mut built: Vec<(&str, &str)> = Vec::new();
    for (repo, tag, user, marker) in images() {
        let seen = built.iter().position(|b| *b == (user, marker));
        let local = format!("img{}", seen.unwrap_or(built.len()));
        if seen.is_some() {
            push_layout(
                &layout,
                &local,
                &format!("{}/{repo}:{tag}", env.registry.addr),
                None,
                Some(&env.netns.0),
            )?;
            continue;
        }
        built.push((user, marker));
        let mut cmd = Command::new("umoci");
        cmd.args(["config", "--image"])
            .arg(format!("{}:v1", layout.display()))
            .args(["--tag", &local, "--config.env", marker]);
        if !user.is_empty() {
            cmd.args(["--config.user", user]);
        }
        host::run(&mut cmd)?;
        push_layout(
            &layout,
            &local,
            &format!("{}/{repo}:{tag}", env.registry.addr),
            None,
            Some(&env.netns.0),
        )?;
    }
    Ok(())
}

/// The specs phase 1 is meant to pass or to show: runtime info, the image service, pod
/// sandboxes, idempotence.
pub const FOCUS: &str =
    "Runtime info|Image Manager|Image Identifier Consistency|Image Consistency|PodSandbox|Idempotence";

#[test]
#[ignore = "minutes long: cargo test -p berth --test cri -- --ignored --nocapture critest"]
fn critest_phase1() -> Result<()> {
    let Some(critest) = env::cri_tool("critest") else {
        return Ok(());
    };
    let Some(env) = env::setup("critest")? else {
        return Ok(());
    };
    let t = Instant::now();
    push_images(&env)?;
    println!("critest images pushed in {:.1}s", t.elapsed().as_secs_f64());
    let sock = format!("unix://{}", env.socket().display());
    let report = env.path("critest.log");
    let t = Instant::now();
    let out = Command::new(&critest)
        .args(["--runtime-endpoint", &sock, "--image-endpoint", &sock])
        .arg(format!("--ginkgo.focus={FOCUS}"))
        .args(["--ginkgo.no-color", "--ginkgo.v"])
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&report, &text)?;
    let keep = std::env::var_os("BERTH_CRITEST_LOG");
    if let Some(p) = &keep {
        std::fs::write(p, &text)?;
        let _ = std::fs::copy(
            env.path("berth-cri.log"),
            format!("{}.berth-cri", p.to_string_lossy()),
        );
    }
    println!(
        "critest --runtime-endpoint {sock} --image-endpoint {sock} --ginkgo.focus='{FOCUS}' ({:.0}s, exit {})",
        t.elapsed().as_secs_f64(),
        out.status
    );
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Ran ")
            || l.contains("Passed |")
            || l.starts_with("[FAIL]")
            || l.starts_with("[SKIPPED]")
        {
            println!("{l}");
        }
    }
    // Reported, not asserted: phase 1 implements no containers, so the specs that need one
    // fail (docs/kubernetes.md lists them with the reason).
    Ok(())
}
