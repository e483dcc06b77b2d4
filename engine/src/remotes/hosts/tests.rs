//! Resolution cases, each tied to containerd's documented behaviour (containerd
//! `docs/hosts.md`, "Registry Host Namespace" and the field sections, and
//! `remotes/docker/config/hosts.go`).

use std::fs;

use super::*;

/// One endpoint as the table states it: `url caps ns`.
fn line(h: &RegistryHost) -> String {
    let caps = [
        (h.capabilities.pull, "pull"),
        (h.capabilities.resolve, "resolve"),
        (h.capabilities.push, "push"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| *n)
    .collect::<Vec<_>>()
    .join(",");
    match &h.namespace {
        Some(ns) => format!("{} {caps} ns={ns}", h.base_url()),
        None => format!("{} {caps}", h.base_url()),
    }
}

struct Case {
    /// What containerd documents; the comment on each case says where.
    name: &'static str,
    /// (directory under config_path, hosts.toml text; "" = no hosts.toml)
    dirs: &'static [(&'static str, &'static str)],
    registry: &'static str,
    want: &'static [&'static str],
}

const CASES: &[Case] = &[
    // hosts.md "Registry Host Namespace": with no directory for the registry, the registry
    // itself is the only host, with all capabilities; docker.io is served by
    // registry-1.docker.io (hosts.go ConfigureHosts) and gets no ns (isProxy exception).
    Case {
        name: "no directory: docker.io upstream",
        dirs: &[],
        registry: "docker.io",
        want: &["https://registry-1.docker.io/v2 pull,resolve,push"],
    },
    // hosts.md "Setup Default Mirror for All Registries": `_default/hosts.toml` applies to
    // any registry without its own directory; the upstream stays last.
    Case {
        name: "_default catch-all mirror, upstream last",
        dirs: &[(
            "_default",
            "[host.\"http://10.0.2.2:5000\"]\ncapabilities = [\"pull\", \"resolve\"]\n",
        )],
        registry: "quay.io",
        want: &[
            "http://10.0.2.2:5000/v2 pull,resolve ns=quay.io",
            "https://quay.io/v2 pull,resolve,push",
        ],
    },
    // hosts.md "server field": `server` replaces the registry's default host; with no
    // [host] entries it is the only endpoint, so nothing else is ever contacted (mirror-only).
    Case {
        name: "server alone is mirror-only",
        dirs: &[("_default", "server = \"http://10.0.2.2:5000\"\n")],
        registry: "docker.io",
        want: &["http://10.0.2.2:5000/v2 pull,resolve,push ns=docker.io"],
    },
    // A registry's own directory wins over _default (hosts.go hostPaths order).
    Case {
        name: "own directory before _default",
        dirs: &[
            ("_default", "server = \"https://catchall.example\"\n"),
            ("ghcr.io", "server = \"https://ghcr-mirror.example\"\n"),
        ],
        registry: "ghcr.io",
        want: &["https://ghcr-mirror.example/v2 pull,resolve,push ns=ghcr.io"],
    },
    // hosts.md "host field": hosts are tried in the order written in the file, then server.
    Case {
        name: "hosts in file order, server last",
        dirs: &[(
            "docker.io",
            "server = \"https://registry-1.docker.io\"\n\
             [host.\"https://zeta.example\"]\ncapabilities = [\"pull\"]\n\
             [host.\"https://alpha.example\"]\ncapabilities = [\"pull\", \"resolve\"]\n\
             [host.\"mid.example:8443\"]\n",
        )],
        registry: "docker.io",
        want: &[
            "https://zeta.example/v2 pull ns=docker.io",
            "https://alpha.example/v2 pull,resolve ns=docker.io",
            "https://mid.example:8443/v2 pull,resolve,push ns=docker.io",
            "https://registry-1.docker.io/v2 pull,resolve,push",
        ],
    },
    // hosts.md "override_path field": the path is used as given, without /v2 appended; a
    // path ending in /v2 is kept, any other path gets /v2 appended.
    Case {
        name: "override_path and path rules",
        dirs: &[(
            "registry.example",
            "[host.\"https://a.example/custom/api\"]\noverride_path = true\n\
             [host.\"https://b.example/proxy\"]\n\
             [host.\"https://c.example/x/v2\"]\n",
        )],
        registry: "registry.example",
        want: &[
            "https://a.example/custom/api pull,resolve,push ns=registry.example",
            "https://b.example/proxy/v2 pull,resolve,push ns=registry.example",
            "https://c.example/x/v2 pull,resolve,push ns=registry.example",
            "https://registry.example/v2 pull,resolve,push",
        ],
    },
    // hosts.go hostDirectory/hostPaths: for host:port, `host_port_` is tried before
    // `host:port`.
    Case {
        name: "port directory: host_port_ first",
        dirs: &[
            ("reg.example:5000", "server = \"https://colon.example\"\n"),
            (
                "reg.example_5000_",
                "server = \"https://underscore.example\"\n",
            ),
        ],
        registry: "reg.example:5000",
        want: &["https://underscore.example/v2 pull,resolve,push ns=reg.example:5000"],
    },
    // ... and `host:port` when `host_port_` does not exist.
    Case {
        name: "port directory: host:port spelling",
        dirs: &[("reg.example:5000", "server = \"https://colon.example\"\n")],
        registry: "reg.example:5000",
        want: &["https://colon.example/v2 pull,resolve,push ns=reg.example:5000"],
    },
    // The bare host's directory does not apply to host:port (containerd tries only the two
    // port spellings, then _default).
    Case {
        name: "bare host directory does not match host:port",
        dirs: &[
            ("reg.example", "server = \"https://bare.example\"\n"),
            ("_default", "server = \"https://default.example\"\n"),
        ],
        registry: "reg.example:5000",
        want: &["https://default.example/v2 pull,resolve,push ns=reg.example:5000"],
    },
    // hosts.md: "scheme ... defaults to https"; an http:// host or server is plain HTTP.
    // ns is added only when the endpoint host differs from the registry (resolver.go
    // isProxy).
    Case {
        name: "http scheme; no ns when the host is the registry",
        dirs: &[(
            "reg.example",
            "server = \"http://reg.example\"\n[host.\"http://reg.example:80\"]\n",
        )],
        registry: "reg.example",
        want: &[
            "http://reg.example:80/v2 pull,resolve,push ns=reg.example",
            "http://reg.example/v2 pull,resolve,push",
        ],
    },
    // hosts.go ConfigureHosts: localhost / loopback registries default to plain HTTP (ctr
    // without --plain-http).
    Case {
        name: "loopback registry defaults to http",
        dirs: &[],
        registry: "127.0.0.1:5000",
        want: &["http://127.0.0.1:5000/v2 pull,resolve,push"],
    },
    // hosts.md "capabilities field": an empty list is the default, all three.
    Case {
        name: "empty capabilities mean all",
        dirs: &[(
            "q.example",
            "[host.\"https://m.example\"]\ncapabilities = []\n",
        )],
        registry: "q.example",
        want: &[
            "https://m.example/v2 pull,resolve,push ns=q.example",
            "https://q.example/v2 pull,resolve,push",
        ],
    },
    // hosts.go loadHostDir: a directory without hosts.toml is Docker's certs.d layout; the
    // registry itself stays the endpoint.
    Case {
        name: "directory without hosts.toml",
        dirs: &[("r.example", "")],
        registry: "r.example",
        want: &["https://r.example/v2 pull,resolve,push"],
    },
];

#[test]
fn resolution_table() {
    let mut failures = Vec::new();
    for c in CASES {
        let dir = tempfile::tempdir().unwrap();
        for (d, text) in c.dirs {
            let p = dir.path().join(d);
            fs::create_dir_all(&p).unwrap();
            if !text.is_empty() {
                fs::write(p.join(HOSTS_FILE), text).unwrap();
            }
        }
        let cfg = if c.dirs.is_empty() {
            None
        } else {
            Some(dir.path())
        };
        match resolve(cfg, c.registry) {
            Ok(hosts) => {
                let got: Vec<String> = hosts.iter().map(line).collect();
                if got != c.want {
                    failures.push(format!(
                        "{}:\n  got  {got:#?}\n  want {:#?}",
                        c.name, c.want
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: error {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// hosts.md "ca field" / "client field": relative paths are relative to the hosts.toml's
/// directory; `ca` and `client` take a string or an array; a client entry may be a
/// [cert, key] pair. Plus `skip_verify`, `header`, `dial_timeout`, and `source`.
#[test]
fn tls_headers_timeout_and_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("reg.example");
    fs::create_dir_all(&d).unwrap();
    fs::write(
        d.join(HOSTS_FILE),
        r#"server = "https://reg.example"
ca = "root.pem"
[host."https://m1.example"]
ca = ["a.pem", "/etc/ssl/b.pem"]
client = [["c.cert", "c.key"], "/abs/both.pem"]
skip_verify = true
dial_timeout = "1m1.5s"
header = { X-Env = "edge", X-Multi = ["a", "b"] }
[host."https://m2.example"]
client = "single.pem"
"#,
    )
    .unwrap();
    let hosts = resolve(Some(dir.path()), "reg.example").unwrap();
    assert_eq!(hosts.len(), 3);
    let m1 = &hosts[0];
    assert_eq!(
        m1.tls.ca_files,
        vec![d.join("a.pem"), PathBuf::from("/etc/ssl/b.pem")]
    );
    assert_eq!(
        m1.tls.client_certs,
        vec![
            (d.join("c.cert"), Some(d.join("c.key"))),
            (PathBuf::from("/abs/both.pem"), None)
        ]
    );
    assert!(m1.tls.skip_verify);
    assert_eq!(m1.dial_timeout, Some(Duration::from_millis(61_500)));
    assert_eq!(
        m1.headers,
        vec![
            ("X-Env".to_string(), vec!["edge".to_string()]),
            (
                "X-Multi".to_string(),
                vec!["a".to_string(), "b".to_string()]
            )
        ]
    );
    assert_eq!(m1.source.as_deref(), Some(d.join(HOSTS_FILE).as_path()));
    assert_eq!(
        hosts[1].tls.client_certs,
        vec![(d.join("single.pem"), None)]
    );
    assert!(!hosts[1].tls.skip_verify);
    // Root-level keys belong to the server entry.
    assert_eq!(hosts[2].tls.ca_files, vec![d.join("root.pem")]);
    assert_eq!(hosts[2].namespace, None);
}

/// Docker's certs.d layout (hosts.go loadCertFiles): *.crt are CAs, *.cert with a matching
/// *.key are client pairs.
#[test]
fn docker_cert_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("reg.example_5000_");
    fs::create_dir_all(&d).unwrap();
    for f in ["ca.crt", "client.cert", "client.key", "lonely.cert"] {
        fs::write(d.join(f), "x").unwrap();
    }
    let hosts = resolve(Some(dir.path()), "reg.example:5000").unwrap();
    assert_eq!(hosts.len(), 1);
    assert_eq!(hosts[0].base_url(), "https://reg.example:5000/v2");
    assert_eq!(hosts[0].tls.ca_files, vec![d.join("ca.crt")]);
    assert_eq!(
        hosts[0].tls.client_certs,
        vec![
            (d.join("client.cert"), Some(d.join("client.key"))),
            (d.join("lonely.cert"), None)
        ]
    );
}

fn error_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("_default");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(HOSTS_FILE), text).unwrap();
    let e = resolve(Some(dir.path()), "docker.io")
        .unwrap_err()
        .to_string();
    e.replace(&d.join(HOSTS_FILE).display().to_string(), "F")
}

/// hosts.go parseHostConfig: an unknown capability is an error ("unknown capability");
/// berth names the file and the line. Other malformed values likewise.
#[test]
fn errors_name_file_and_line() {
    assert_eq!(
        error_of("server = \"https://x\"\n\n[host.\"https://m\"]\ncapabilities = [\"pull\", \"fetch\"]\n"),
        "F:4: host \"https://m\": unknown capability \"fetch\" (expected pull, resolve or push)"
    );
    assert_eq!(
        error_of("[host.\"https://m\"]\nskip-verify = true\n"),
        "F:2: host \"https://m\": unknown key `skip-verify` (expected capabilities, ca, client, skip_verify, header, override_path, dial_timeout)"
    );
    assert_eq!(
        error_of("server = 5\n"),
        "F:1: server: expected a string URL"
    );
    assert_eq!(
        error_of("\n\ndial_timeout = \"3 parsecs\"\n"),
        "F:3: dial_timeout \"3 parsecs\": unknown unit \" parsecs\" (ns, us, ms, s, m or h)"
    );
    assert_eq!(
        error_of("[host.\"ftp://m\"]\n"),
        "F:1: \"ftp://m\": unsupported scheme (expected http:// or https://)"
    );
    assert_eq!(
        error_of("[host.\"https://m\"]\nclient = [[\"only-one\"]]\n"),
        "F:2: host \"https://m\": client: a pair must be [certificate, key], two strings"
    );
    let e = error_of("server = \"https://x\"\n[host\n");
    assert!(e.starts_with("F:2: invalid TOML:"), "{e}");
}

#[test]
fn edits_apply_on_the_next_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("_default");
    fs::create_dir_all(&d).unwrap();
    fs::write(d.join(HOSTS_FILE), "server = \"http://one:5000\"\n").unwrap();
    assert_eq!(
        resolve(Some(dir.path()), "docker.io").unwrap()[0].host,
        "one:5000"
    );
    fs::write(d.join(HOSTS_FILE), "server = \"http://two:5000\"\n").unwrap();
    assert_eq!(
        resolve(Some(dir.path()), "docker.io").unwrap()[0].host,
        "two:5000"
    );
}

#[test]
fn registry_names_cannot_escape_the_directory() {
    for bad in ["..", "../etc", "a/b", "", ".hidden", "a b"] {
        assert!(
            matches!(
                resolve(Some(Path::new("/tmp")), bad),
                Err(HostsError::BadRegistry(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn references_split_like_docker() {
    let cases = [
        ("alpine", "docker.io", "library/alpine", "latest"),
        (
            "docker.io/library/alpine:3.19",
            "docker.io",
            "library/alpine",
            "3.19",
        ),
        ("index.docker.io/foo/bar", "docker.io", "foo/bar", "latest"),
        ("foo/bar:1", "docker.io", "foo/bar", "1"),
        ("localhost/x", "localhost", "x", "latest"),
        ("10.0.2.2:5000/a/b:t", "10.0.2.2:5000", "a/b", "t"),
        (
            "ghcr.io/o/r@sha256:0123abcd",
            "ghcr.io",
            "o/r",
            "sha256:0123abcd",
        ),
    ];
    for (r, reg, repo, obj) in cases {
        let n = parse_reference(r).unwrap();
        assert_eq!(
            (n.registry.as_str(), n.repository.as_str(), n.object()),
            (reg, repo, obj),
            "{r}"
        );
    }
    for bad in [
        "",
        "UPPER/case",
        "x@sha256:",
        "x:",
        "a//b",
        "reg.example:5000/../x",
    ] {
        assert!(parse_reference(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn go_durations() {
    assert_eq!(parse_go_duration("3s").unwrap(), Duration::from_secs(3));
    assert_eq!(
        parse_go_duration("500ms").unwrap(),
        Duration::from_millis(500)
    );
    assert_eq!(
        parse_go_duration("1h2m").unwrap(),
        Duration::from_secs(3720)
    );
    assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
    for bad in ["", "3", "-1s", "1x", "s"] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?}");
    }
}
