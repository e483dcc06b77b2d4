//! Differential test of hosts.toml resolution against containerd: the same hosts directory is
//! given to `ctr images pull --hosts-dir` (Debian's containerd 1.6) and to berth's
//! `remotes::hosts::resolve`, with every endpoint a recording listener on loopback that
//! answers 404 (one answers 500) so ctr falls back through all of them. The endpoints ctr
//! asked to resolve the tag, in order, with the request path (override_path, /v2, ns) and
//! Host header, must be berth's endpoints with the resolve capability, in berth's order.
//!
//! Runs as root (a private containerd); skips visibly otherwise.

use berth_test_support::host;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use berth_engine::remotes::hosts;

/// What a listener saw: (listener port, request target, Host header).
type Log = Arc<Mutex<Vec<(u16, String, String)>>>;

/// A listener that records each request and answers `status` with no body. Its thread
/// lives as long as the test process.
fn recorder(log: &Log, status: &'static str) -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    let log = log.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().expect("clone socket"));
            // One request per connection is enough: we close after answering.
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut host = String::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("host") {
                        host = v.trim().to_string();
                    }
                }
            }
            let target = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .replace("%3A", ":");
            log.lock().unwrap().push((port, target, host));
            let _ = conn.write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    Ok(port)
}

struct Case {
    name: &'static str,
    /// containerd's documented behaviour this case checks.
    cites: &'static str,
    /// (directory, hosts.toml) with `{P0}`..`{P3}` standing for the listener ports.
    dirs: &'static [(&'static str, &'static str)],
    /// A containerd 1.6 bug this case hits, recognised by this text in ctr's stderr: the
    /// difference is then printed, not failed.
    ctr16_bug: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "hosts in file order, then the registry itself",
        cites: "hosts.md host field: hosts are tried in order, server (or the registry) last",
        dirs: &[(
            "127.0.0.1:{P0}",
            "[host.\"http://127.0.0.1:{P2}\"]\n[host.\"http://127.0.0.1:{P1}\"]\n",
        )],
        ctr16_bug: None,
    },
    Case {
        name: "host_port_ directory before host:port; a 500 falls back too",
        cites: "hosts.go hostPaths: host_port_ first; resolver: >399 tries the next host",
        dirs: &[
            ("127.0.0.1_{P0}_", "[host.\"http://127.0.0.1:{P3}\"]\n"),
            ("127.0.0.1:{P0}", "[host.\"http://127.0.0.1:{P1}\"]\n"),
        ],
        ctr16_bug: None,
    },
    Case {
        name: "a pull-only host is not asked to resolve a tag",
        cites: "hosts.md capabilities field: resolve is needed to resolve a tag",
        dirs: &[(
            "127.0.0.1:{P0}",
            "[host.\"http://127.0.0.1:{P1}\"]\ncapabilities = [\"pull\"]\n\
             [host.\"http://127.0.0.1:{P2}\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
        )],
        ctr16_bug: None,
    },
    Case {
        name: "override_path and path prefixes",
        cites: "hosts.md override_path field; a path without /v2 gets /v2 appended",
        dirs: &[(
            "127.0.0.1:{P0}",
            "[host.\"http://127.0.0.1:{P1}/custom/api\"]\noverride_path = true\n\
             [host.\"http://127.0.0.1:{P2}/prefix\"]\n",
        )],
        ctr16_bug: None,
    },
    Case {
        name: "server alone: mirror-only",
        cites: "hosts.md server field: server replaces the registry's default host",
        dirs: &[("127.0.0.1:{P0}", "server = \"http://127.0.0.1:{P1}\"\n")],
        // containerd 1.6.20 cannot parse a hosts.toml without a [host] table ("invalid
        // `host` tree"), logs it and falls back to the registry itself; 1.7 fixed it.
        ctr16_bug: Some("invalid `host` tree"),
    },
    Case {
        name: "server with hosts: the registry itself is never asked",
        cites: "hosts.md server field: server replaces the registry's default host",
        dirs: &[(
            "127.0.0.1:{P0}",
            "server = \"http://127.0.0.1:{P1}\"\n[host.\"http://127.0.0.1:{P2}\"]\n",
        )],
        ctr16_bug: None,
    },
    Case {
        name: "_default catch-all",
        cites: "hosts.md: _default applies to registries without their own directory",
        dirs: &[("_default", "[host.\"http://127.0.0.1:{P2}\"]\n")],
        ctr16_bug: None,
    },
];

fn subst(s: &str, ports: &[u16; 4]) -> String {
    let mut s = s.to_string();
    for (i, p) in ports.iter().enumerate() {
        s = s.replace(&format!("{{P{i}}}"), &p.to_string());
    }
    s
}

#[test]
fn ctr_tries_the_endpoints_berth_resolves_in_the_same_order() -> Result<()> {
    if !host::root_and_tools("hosts differential vs ctr", &["containerd", "ctr"])? {
        return Ok(());
    }
    let t0 = Instant::now();
    let work = tempfile::tempdir()?;
    let containerd = host::Containerd::start(&work.path().join("containerd"))?;
    let log: Log = Arc::default();
    let ports = [
        recorder(&log, "404 Not Found")?,
        recorder(&log, "404 Not Found")?,
        recorder(&log, "404 Not Found")?,
        recorder(&log, "500 Internal Server Error")?,
    ];
    let registry = format!("127.0.0.1:{}", ports[0]);
    let (repo, tag) = ("test/app", "v1");
    let reference = format!("{registry}/{repo}:{tag}");
    let mut failures = Vec::new();
    let mut unsupported = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let dir = work.path().join(format!("certs-{i}"));
        for (d, text) in c.dirs {
            let p = dir.join(subst(d, &ports));
            std::fs::create_dir_all(&p)?;
            std::fs::write(p.join("hosts.toml"), subst(text, &ports))?;
        }
        // berth: the endpoints with resolve, as requests.
        let want: Vec<(u16, String, String)> = hosts::resolve(Some(&dir), &registry)?
            .into_iter()
            .filter(|h| h.capabilities.resolve)
            .map(|h| {
                let port = h.host.rsplit(':').next().unwrap().parse().unwrap();
                let mut target = format!("{}/{repo}/manifests/{tag}", h.path.trim_end_matches('/'));
                if let Some(ns) = &h.namespace {
                    target.push_str(&format!("?ns={ns}"));
                }
                (port, target, h.host.clone())
            })
            .collect();
        log.lock().unwrap().clear();
        let out = containerd
            .ctr("default")
            .args(["images", "pull", "--hosts-dir"])
            .arg(&dir)
            .arg(&reference)
            .output()
            .context("run ctr")?;
        assert!(
            !out.status.success(),
            "{}: nothing serves the image, ctr must fail",
            c.name
        );
        let mut got = log.lock().unwrap().clone();
        // Retries of one endpoint (HEAD then GET) count once: the order is what matters.
        got.dedup_by(|a, b| a.0 == b.0);
        println!(
            "case {:?} ({}):\n  berth {:?}\n  ctr   {:?}",
            c.name, c.cites, want, got
        );
        if got != want {
            let msg = format!(
                "{}: berth {want:?} != ctr {got:?}\nctr stderr: {}",
                c.name,
                String::from_utf8_lossy(&out.stderr)
            );
            if c.ctr16_bug
                .is_some_and(|m| String::from_utf8_lossy(&out.stderr).contains(m))
            {
                unsupported.push(msg);
            } else {
                failures.push(msg);
            }
        }
    }
    for u in &unsupported {
        println!("NOT COMPARED (a containerd 1.6 bug): {u}");
    }
    drop(containerd);
    println!("differential took {:?}", t0.elapsed());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
