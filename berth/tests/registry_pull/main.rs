//! Registry pulls against a real `docker-registry` (Debian's distribution 2.8) on loopback:
//! pull + unpack matches an import of the same image, shared layers are fetched once, TLS
//! with a self-signed CA and htpasswd auth (and the errors for a wrong CA or password),
//! fallback past an endpoint that never answers and one that drops SYNs, and an interrupted
//! pull that resumes.
//!
//! Each test starts its own registry binary with a temporary config and port (not the
//! systemd service) and pushes images with `skopeo copy` from OCI layouts written from the
//! in-memory archives of `support`. The pulls run in-process through
//! `berth_engine::remotes::pull` with explicit endpoint lists (host resolution is another
//! module's job). Durations are printed, never asserted.

use berth_test_support::host;
mod auth;
#[path = "../registry/mod.rs"]
mod registry;
use berth_test_support::support;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use berth_engine::remotes::auth::{Credential, Credentials};
use berth_engine::remotes::client::{ClientOptions, RegistryClient};
use berth_engine::remotes::pull::{self, PullOptions, PullReport};
use berth_engine::remotes::{RegistryHost, Scheme};
use host::run;
use registry::{endpoint, engine, opts, rt, start_registry, Engine, RegistryConfig};

const TOOLS: &[&str] = &[
    "docker-registry",
    "skopeo",
    "openssl",
    "htpasswd",
    "ip",
    "iptables",
];

/// An image built in memory: its manifest and blobs.
struct TestImage {
    manifest: Vec<u8>,
    blobs: BTreeMap<String, Vec<u8>>,
    layers: Vec<Vec<u8>>,
}

fn image(layers: Vec<Vec<u8>>) -> TestImage {
    let mut blobs = BTreeMap::new();
    let refs: Vec<&[u8]> = layers.iter().map(|l| l.as_slice()).collect();
    let manifest = support::manifest(&refs, &mut blobs);
    TestImage {
        manifest,
        blobs,
        layers,
    }
}

/// Pushes `img` as `<addr>/<repo>` with skopeo from an OCI layout.
fn push(
    work: &Path,
    img: &TestImage,
    dest: &str,
    creds: Option<&str>,
    netns: Option<&str>,
) -> Result<()> {
    let layout = work.join(format!(
        "layout-{}",
        support::sha(&img.manifest)[7..19].to_owned()
    ));
    if !layout.exists() {
        std::fs::create_dir_all(layout.join("blobs/sha256"))?;
        std::fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        for (d, data) in &img.blobs {
            std::fs::write(layout.join("blobs/sha256").join(&d[7..]), data)?;
        }
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": support::sha(&img.manifest), "size": img.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "t"}
            }]
        });
        std::fs::write(layout.join("index.json"), index.to_string())?;
    }
    registry::push_layout(&layout, "t", dest, creds, netns)
}

fn do_pull(
    e: &Engine,
    reference: &str,
    hosts: &[RegistryHost],
    creds: Credentials,
    o: PullOptions,
) -> Result<PullReport, pull::PullError> {
    rt().block_on(pull::pull(
        e.storage.clone(),
        e.snapshotters.clone(),
        "default",
        reference,
        hosts,
        Arc::new(creds),
        o,
        None,
    ))
}

fn print_attempts(what: &str, r: &PullReport) {
    println!("{what}: {:.2}s", r.elapsed.as_secs_f64());
    for a in &r.attempts {
        println!("  {a}");
    }
}

/// Files of an unpacked tree: relative path → (mode, contents).
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let data = if meta.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            out.insert(rel, (meta.permissions().mode(), data));
            if meta.is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // xorshift: incompressible enough that gzip keeps the size.
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn pull_unpacks_like_import_and_fetches_shared_layers_once() -> Result<()> {
    if !host::root_and_tools("registry pull", TOOLS)? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let reg = start_registry(&work.path().join("registry"), RegistryConfig::default())?;
    let base = support::layer(&[
        ("etc/os-release", b"NAME=berth-test\n"),
        ("bin/tool", &random_bytes(300_000, 1)),
    ]);
    let mid = support::layer(&[("usr/share/doc/readme", b"hello\n")]);
    let top_a = support::layer(&[("app/a", b"image a\n")]);
    let top_b = support::layer(&[("app/b", b"image b\n")]);
    let a = image(vec![base.clone(), mid.clone(), top_a]);
    let b = image(vec![base.clone(), mid.clone(), top_b]);
    push(
        work.path(),
        &a,
        &format!("{}/test/a:v1", reg.addr),
        None,
        None,
    )?;
    push(
        work.path(),
        &b,
        &format!("{}/test/b:v1", reg.addr),
        None,
        None,
    )?;
    let hosts = vec![endpoint(Scheme::Http, &reg.addr)];

    let root = work.path().join("berth");
    {
        let e = engine(&root)?;
        // Two concurrent pulls sharing two layers: each shared blob is downloaded once.
        let started = Instant::now();
        let (ref_a, ref_b) = (
            format!("{}/test/a:v1", reg.addr),
            format!("{}/test/b:v1", reg.addr),
        );
        let (ra, rb) = rt().block_on(async {
            let pa = pull::pull(
                e.storage.clone(),
                e.snapshotters.clone(),
                "default",
                &ref_a,
                &hosts,
                Arc::new(Credentials::default()),
                opts(Duration::from_secs(10)),
                None,
            );
            let pb = pull::pull(
                e.storage.clone(),
                e.snapshotters.clone(),
                "default",
                &ref_b,
                &hosts,
                Arc::new(Credentials::default()),
                opts(Duration::from_secs(10)),
                None,
            );
            tokio::join!(pa, pb)
        });
        let (ra, rb) = (ra?, rb?);
        println!(
            "two concurrent pulls: {:.2}s",
            started.elapsed().as_secs_f64()
        );
        print_attempts("pull a", &ra);
        print_attempts("pull b", &rb);
        assert_eq!(
            ra.layers_fetched + rb.layers_fetched,
            4,
            "3 + 3 layers, 2 shared: 4 downloads"
        );
        assert_eq!(ra.layers_present + rb.layers_present, 2);
        for shared in [&base, &mid] {
            let gz = support::sha(&support::gzip(shared));
            let gets = ra
                .attempts
                .iter()
                .chain(&rb.attempts)
                .filter(|l| l.contains(&format!("/blobs/{gz}: ok")))
                .count();
            assert_eq!(gets, 1, "shared layer {gz} downloaded {gets} times");
        }
        let diff_ids: Vec<berth_engine::content::Digest> = a
            .layers
            .iter()
            .map(|l| support::sha(l).parse().unwrap())
            .collect();
        let chain = *berth_engine::images::chain_ids(&diff_ids).last().unwrap();
        assert_eq!(ra.chain_id, Some(chain));
        assert_eq!(ra.layers_applied + ra.layers_reused, 3);

        // A second pull finds everything present and downloads nothing.
        let again = do_pull(
            &e,
            &format!("{}/test/a:v1", reg.addr),
            &hosts,
            Credentials::default(),
            opts(Duration::from_secs(10)),
        )?;
        assert_eq!(again.layers_fetched, 0);
        assert_eq!(again.downloaded, 0);
        assert_eq!(again.layers_present, 3);
    }

    // berthd on the pulled root; the same image imported into namespace "imp" through it;
    // both mounted: the same files.
    let mut blobs = a.blobs.clone();
    blobs.insert(support::sha(&a.manifest), a.manifest.clone());
    let archive = support::archive(&[("imported:v1", a.manifest.clone())], &blobs);
    std::fs::rename(&root, work.path().join("root"))?;
    let berthd = support::start_berthd(work.path());
    let tar = work.path().join("a.tar");
    std::fs::write(&tar, archive)?;
    support::berthctl_ok(
        &berthd.socket,
        &["-n", "imp", "images", "import", tar.to_str().unwrap()],
    );
    let ls = support::berthctl_ok(&berthd.socket, &["images", "ls"]);
    assert!(ls.contains(&format!("{}/test/a:v1", reg.addr)), "{ls}");
    let m1 = work.path().join("m-pulled");
    let m2 = work.path().join("m-imported");
    std::fs::create_dir_all(&m1)?;
    std::fs::create_dir_all(&m2)?;
    support::berthctl_ok(
        &berthd.socket,
        &[
            "images",
            "mount",
            &format!("{}/test/a:v1", reg.addr),
            m1.to_str().unwrap(),
        ],
    );
    let _u1 = Unmount(berthd.socket.clone(), m1.clone(), "default");
    support::berthctl_ok(
        &berthd.socket,
        &[
            "-n",
            "imp",
            "images",
            "mount",
            "imported:v1",
            m2.to_str().unwrap(),
        ],
    );
    let _u2 = Unmount(berthd.socket.clone(), m2.clone(), "imp");
    let (t1, t2) = (tree(&m1), tree(&m2));
    assert!(
        t1.contains_key("bin/tool") && t1.contains_key("app/a"),
        "{:?}",
        t1.keys()
    );
    assert_eq!(t1, t2, "pulled and imported trees differ");
    Ok(())
}

/// Unmounts an `images mount` on drop.
struct Unmount(PathBuf, PathBuf, &'static str);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = support::berthctl(
            &self.0,
            &["-n", self.2, "images", "unmount", self.1.to_str().unwrap()],
        );
    }
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
fn make_ca(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let cnf = dir.join(format!("{name}.cnf"));
    std::fs::write(
        &cnf,
        format!("[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n[dn]\nCN = {name}\n[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"),
    )?;
    let ca = dir.join(format!("{name}-ca.pem"));
    let ca_key = dir.join(format!("{name}-ca.key"));
    let cert = dir.join(format!("{name}-cert.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    let csr = dir.join(format!("{name}.csr"));
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")?;
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(ec)
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca)
        .args(["-days", "2", "-config"])
        .arg(&cnf))?;
    run(Command::new("openssl")
        .args(["req", "-new"])
        .args(ec)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", "/CN=127.0.0.1"]))?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .args(["-CAcreateserial", "-days", "2", "-out"])
        .arg(&cert)
        .arg("-extfile")
        .arg(&ext))?;
    Ok((ca, cert, key))
}

/// A loopback port that accepts connections and never answers.
fn silent_listener() -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
            if held.len() > 64 {
                break;
            }
        }
    });
    (addr, h)
}

/// A network namespace of the test's own, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn falls_back_past_silent_and_blackholed_endpoints() -> Result<()> {
    if !host::root_and_tools("registry fallback", TOOLS)? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let img = image(vec![
        support::layer(&[("one", &random_bytes(200_000, 7))]),
        support::layer(&[("two", b"2\n")]),
    ]);

    // (a) The first endpoint accepts TCP and never answers.
    {
        let reg = start_registry(&work.path().join("registry-a"), RegistryConfig::default())?;
        push(
            work.path(),
            &img,
            &format!("{}/fb/app:v1", reg.addr),
            None,
            None,
        )?;
        let (silent, _h) = silent_listener();
        // The second endpoint stands for a mirror of another registry: `?ns=` on every
        // request (docker-registry ignores the parameter, as mirrors of one registry do).
        let mut mirror = endpoint(Scheme::Http, &reg.addr);
        mirror.namespace = Some("upstream.example".into());
        mirror.headers = vec![("X-Berth-Test".into(), vec!["1".into()])];
        let hosts = vec![endpoint(Scheme::Http, &silent), mirror];
        let e = engine(&work.path().join("berth-a"))?;
        let started = Instant::now();
        let r = do_pull(
            &e,
            &format!("{}/fb/app:v1", reg.addr),
            &hosts,
            Credentials::default(),
            opts(Duration::from_secs(2)),
        )?;
        println!(
            "(a) silent first endpoint: pull took {:.2}s (stall timeout 2s)",
            started.elapsed().as_secs_f64()
        );
        print_attempts("(a)", &r);
        assert!(
            r.attempts.iter().any(|l| l
                .contains(&format!("http://{silent}/v2/fb/app/manifests/v1: failed"))
                && l.contains("no response within 2s")),
            "{:?}",
            r.attempts
        );
        assert!(
            r.attempts.iter().any(|l| l.contains(&format!(
                "http://{}/v2/fb/app/manifests/v1?ns=upstream.example: ok",
                reg.addr
            ))),
            "{:?}",
            r.attempts
        );
        assert_eq!(r.layers_fetched, 2);
    }

    // (b) The first endpoint drops SYNs: in a network namespace of our own (so the rule
    // touches nothing else), an iptables rule drops every SYN to 127.0.0.2:5000 — no RST, no
    // ICMP, the connect just hangs. The registry runs in the namespace on its loopback, and
    // the pull runs on a thread that joined the namespace.
    let ns = Netns(format!("berth-pull-{}", std::process::id()));
    run(Command::new("ip").args(["netns", "add", &ns.0]))?;
    let in_ns = |args: &[&str]| run(Command::new("ip").args(["netns", "exec", &ns.0]).args(args));
    in_ns(&["ip", "link", "set", "lo", "up"])?;
    in_ns(&[
        "iptables",
        "-A",
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        "127.0.0.2",
        "--dport",
        "5000",
        "--syn",
        "-j",
        "DROP",
    ])?;
    let reg = start_registry(
        &work.path().join("registry-b"),
        RegistryConfig {
            tls: None,
            htpasswd: None,
            netns: Some(&ns.0),
        },
    )?;
    push(
        work.path(),
        &img,
        &format!("{}/fb/app:v1", reg.addr),
        None,
        Some(&ns.0),
    )?;
    let mut dead = endpoint(Scheme::Http, "127.0.0.2:5000");
    dead.dial_timeout = Some(Duration::from_secs(2));
    let hosts = vec![dead, endpoint(Scheme::Http, &reg.addr)];
    let e = engine(&work.path().join("berth-b"))?;
    let reference = format!("{}/fb/app:v1", reg.addr);
    let nsname = ns.0.clone();
    let storage = e.storage.clone();
    let snapshotters = e.snapshotters.clone();
    let (r, took) = std::thread::spawn(move || -> Result<(PullReport, Duration)> {
        let f = std::fs::File::open(format!("/run/netns/{nsname}"))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        // A runtime whose threads start here, inside the namespace.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let started = Instant::now();
        let r = rt.block_on(pull::pull(
            storage,
            snapshotters,
            "default",
            &reference,
            &hosts,
            Arc::new(Credentials::default()),
            opts(Duration::from_secs(5)),
            None,
        ))?;
        Ok((r, started.elapsed()))
    })
    .join()
    .unwrap()?;
    println!(
        "(b) blackholed first endpoint: pull took {:.2}s (dial timeout 2s)",
        took.as_secs_f64()
    );
    print_attempts("(b)", &r);
    assert!(
        r.attempts.iter().any(|l| l
            .contains("http://127.0.0.2:5000/v2/fb/app/manifests/v1: failed")
            && l.contains("cannot connect to 127.0.0.2:5000")),
        "{:?}",
        r.attempts
    );
    assert_eq!(r.layers_fetched, 2);
    Ok(())
}

#[test]
#[ignore = "child process of interrupted_pull_resumes"]
fn resume_child() {
    let (Ok(root), Ok(reference), Ok(addr)) = (
        std::env::var("BERTH_PULL_CHILD_ROOT"),
        std::env::var("BERTH_PULL_CHILD_REF"),
        std::env::var("BERTH_PULL_CHILD_ADDR"),
    ) else {
        return;
    };
    let e = engine(Path::new(&root)).unwrap();
    let r = do_pull(
        &e,
        &reference,
        &[endpoint(Scheme::Http, &addr)],
        Credentials::default(),
        opts(Duration::from_secs(10)),
    );
    // The failpoint kills this process mid-blob; getting here means it did not fire.
    let _ = std::io::stdout().write_all(format!("child finished: {r:?}\n").as_bytes());
}

#[test]
fn interrupted_pull_resumes() -> Result<()> {
    if !host::root_and_tools("interrupted pull", TOOLS)? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let reg = start_registry(&work.path().join("registry"), RegistryConfig::default())?;
    // One 4 MiB incompressible layer: four 1 MiB writes into its ingest.
    let img = image(vec![support::layer(&[("big", &random_bytes(4 << 20, 3))])]);
    let reference = format!("{}/resume/app:v1", reg.addr);
    push(work.path(), &img, &reference, None, None)?;
    let root = work.path().join("berth");
    // Writes: manifest (1), config (2), then the layer's chunks: die at the layer's 3rd.
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "resume_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BERTH_PULL_CHILD_ROOT", &root)
        .env("BERTH_PULL_CHILD_REF", &reference)
        .env("BERTH_PULL_CHILD_ADDR", &reg.addr)
        .env("BERTH_FAILPOINT", "content.write.chunk@5")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && !stdout.contains("child finished"),
        "the child was not killed mid-blob: {stdout}"
    );
    println!("child killed mid-blob: {}", out.status);
    let e = engine(&root)?;
    let r = do_pull(
        &e,
        &reference,
        &[endpoint(Scheme::Http, &reg.addr)],
        Credentials::default(),
        opts(Duration::from_secs(10)),
    )?;
    print_attempts("resumed pull", &r);
    let gz = support::gzip(&img.layers[0]);
    let layer_get = r
        .attempts
        .iter()
        .find(|l| l.contains(&format!("/blobs/{}: ok", support::sha(&gz))))
        .unwrap_or_else(|| panic!("no layer download in {:?}", r.attempts));
    let offset: u64 = layer_get
        .split("from offset ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {layer_get}"));
    assert!(
        offset >= 1 << 20 && offset < gz.len() as u64,
        "not resumed mid-blob: {layer_get}"
    );
    assert_eq!(r.downloaded, gz.len() as u64 - offset);
    assert!(r.chain_id.is_some());
    Ok(())
}

/// berthd, the Pull service and `berthctl images pull` end to end, the endpoint and its CA
/// coming from a certs.d `hosts.toml` in berthd's configured `config_path`.
#[test]
fn berthctl_images_pull_through_berthd() -> Result<()> {
    if !host::root_and_tools(
        "berthctl images pull",
        &["docker-registry", "skopeo", "openssl"],
    )? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let (ca, cert, key) = make_ca(&work.path().join("pki"), "cli")?;
    let reg = start_registry(
        &work.path().join("registry"),
        RegistryConfig {
            tls: Some((&cert, &key)),
            htpasswd: None,
            netns: None,
        },
    )?;
    let img = image(vec![
        support::layer(&[("a", &random_bytes(100_000, 5))]),
        support::layer(&[("b", b"b\n")]),
    ]);
    let reference = format!("{}/cli/app:v1", reg.addr);
    push(work.path(), &img, &reference, None, None)?;

    // berthd finds the registry's TLS endpoint and its CA through certs.d, as an operator
    // configures a mirror (a loopback registry with no hosts.toml is plain HTTP, as in
    // containerd).
    let dir = work.path();
    let hosts_dir = dir.join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&hosts_dir)?;
    std::fs::write(
        hosts_dir.join("hosts.toml"),
        format!(
            "server = \"https://{0}\"\n[host.\"https://{0}\"]\ncapabilities = [\"pull\", \"resolve\"]\nca = \"{1}\"\n",
            reg.addr,
            ca.display()
        ),
    )?;
    let cfg = dir.join("berthd.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[ttrpc]\naddress = \"{0}/state/berthd.sock\"\n[plugins.\"berth.registry.v1\"]\nconfig_path = \"{0}/certs.d\"\n",
            dir.display()
        ),
    )?;
    let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
        .arg("--config")
        .arg(&cfg)
        .stderr(std::fs::File::create(dir.join("berthd.log"))?)
        .spawn()?;
    let d = support::Berthd {
        child,
        socket: dir.join("state/berthd.sock"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !support::berthctl(&d.socket, &["version"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "berthd did not answer within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = Instant::now();
    let out = support::berthctl_ok(&d.socket, &["images", "pull", &reference]);
    println!(
        "berthctl images pull ({:.2}s):\n{out}",
        started.elapsed().as_secs_f64()
    );
    let endpoint = format!("from https://{}/v2", reg.addr);
    assert!(
        out.lines()
            .any(|l| l.starts_with("layer") && l.contains("done") && l.contains(&endpoint)),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("layer") && l.contains("unpacked"))
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains(&format!("{reference}: {}", support::sha(&img.manifest))),
        "{out}"
    );

    assert_eq!(
        support::berthctl_ok(&d.socket, &["images", "pull", "-q", &reference]).trim(),
        reference
    );
    let json: serde_json::Value = serde_json::from_str(&support::berthctl_ok(
        &d.socket,
        &["images", "pull", "--format", "json", &reference],
    ))?;
    assert_eq!(json["layers_present"], 2, "{json}");
    assert_eq!(json["downloaded_bytes"], 0, "{json}");
    assert!(support::berthctl_ok(&d.socket, &["images", "ls"]).contains(&reference));

    let missing = format!("{}/cli/app:nope", reg.addr);
    let out = support::berthctl(&d.socket, &["images", "pull", &missing]);
    let err = String::from_utf8_lossy(&out.stderr);
    println!("missing tag: {err}");
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "https://{}/v2/cli/app/manifests/nope: 404 Not Found",
            reg.addr
        )),
        "{err}"
    );
    Ok(())
}
