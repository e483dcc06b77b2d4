//! critest against berth-cri on the host (`#[ignore]`d: minutes long; `make test-cri`).
//! critest's hard-coded public images are rebuilt locally (`berth_test_support::cri_images`)
//! and served by the loopback registry through
//! berthd's mirror-only `_default`. critest runs inside the test's network namespace, beside
//! berth-cri (its host-network and port specs talk to the pods from there).
//!
//! `BERTH_CRITEST_FOCUS` narrows the run (a ginkgo regex); `BERTH_CRITEST_LOG` keeps the
//! output and berth-cri's log.

use std::time::Instant;

use anyhow::Result;

use crate::env;

/// Specs skipped by name, with the reason.
pub const SKIP: &[(&str, &str)] = &[
    (
        "public image with digest should be pulled and removed",
        "pinned to a public digest (test-image-digest@sha256:9700f9…) a local image cannot have",
    ),
    ("SELinux", "SELinux is not enabled on berth nodes"),
];

/// The `--ginkgo.skip` regex of [`SKIP`].
pub fn skip_regex() -> String {
    SKIP.iter()
        .map(|(s, _)| s.to_string())
        .collect::<Vec<_>>()
        .join("|")
}

#[test]
#[ignore = "minutes long: cargo test -p berth --test cri -- --ignored --nocapture critest"]
fn critest_on_the_host() -> Result<()> {
    let Some(critest) = env::cri_tool("critest") else {
        return Ok(());
    };
    let Some(env) = env::setup("critest")? else {
        return Ok(());
    };
    let t = Instant::now();
    let pushed = berth_test_support::cri_images::push_all(
        &env.path("critest-images"),
        &env.registry.addr,
        Some(&env.netns.0),
    )?;
    println!(
        "{} critest images pushed in {:.1}s",
        pushed.len(),
        t.elapsed().as_secs_f64()
    );
    let sock = format!("unix://{}", env.socket().display());
    let focus = std::env::var("BERTH_CRITEST_FOCUS").unwrap_or_default();
    let t = Instant::now();
    let mut cmd = env.netns.command(&critest);
    cmd.args(["--runtime-endpoint", &sock, "--image-endpoint", &sock])
        .arg(format!("--ginkgo.skip={}", skip_regex()))
        .args(["--ginkgo.no-color", "--ginkgo.v"]);
    if !focus.is_empty() {
        cmd.arg(format!("--ginkgo.focus={focus}"));
    }
    let out = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(env.path("critest.log"), &text)?;
    if let Some(p) = std::env::var_os("BERTH_CRITEST_LOG") {
        std::fs::write(&p, &text)?;
        let _ = std::fs::copy(
            env.path("berth-cri.log"),
            format!("{}.berth-cri", p.to_string_lossy()),
        );
        let _ = std::fs::copy(
            env.path("berthd.log"),
            format!("{}.berthd", p.to_string_lossy()),
        );
    }
    println!(
        "critest --runtime-endpoint {sock} --image-endpoint {sock} --ginkgo.skip='{}' ({:.0}s, exit {})",
        skip_regex(),
        t.elapsed().as_secs_f64(),
        out.status
    );
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Ran ") || l.contains("Passed |") || l.starts_with("[FAIL]") {
            println!("{l}");
        }
    }
    Ok(())
}
