//! Crash safety of the storage: berthd is killed with SIGKILL at random moments while a
//! client writes blobs (ingest writes, commit renames, record commits), removes records and
//! collects garbage (GC sweeps); after each restart no record may point at a missing or
//! wrong blob, start-up reconcile must have had nothing to repair (the ordering rule makes
//! that case impossible), and the work can continue.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

const BERTHD: &str = env!("CARGO_BIN_EXE_berthd");
const BERTHCTL: &str = env!("CARGO_BIN_EXE_berthctl");
const KILLS: usize = 25;

struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, run: usize) -> Daemon {
    let cfg = dir.join("berthd.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[ttrpc]\naddress = \"{0}/state/berthd.sock\"\n\
             [plugins.\"berth.gc.v1.scheduler\"]\ninterval_secs = 0\n",
            dir.display()
        ),
    )
    .unwrap();
    let log = dir.join(format!("berthd-{run}.log"));
    let child = Command::new(BERTHD)
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::from(File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        socket: dir.join("state/berthd.sock"),
        log,
    };
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if ctl(&d.socket, &["version"]).status.success() {
            return d;
        }
        if let Some(s) = d.child.try_wait().unwrap() {
            panic!(
                "berthd exited early ({s}): {}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("berthd did not answer within 20 s");
}

fn ctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(BERTHCTL)
        .arg("--address")
        .arg(socket)
        .args(["--namespace", "crash"])
        .args(args)
        .output()
        .unwrap()
}

/// xorshift64, seeded from the clock: different kill points on every run, printed so a
/// failing run can be told apart.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every recorded blob reads back whole and hashes to its digest.
fn check_records(d: &Daemon) -> usize {
    let out = ctl(&d.socket, &["content", "ls", "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digests: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for digest in &digests {
        let out = ctl(&d.socket, &["content", "get", digest]);
        assert!(
            out.status.success(),
            "recorded {digest} unreadable: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(format!("sha256:{}", sha256_hex(&out.stdout)), *digest);
    }
    digests.len()
}

#[test]
fn sigkill_during_writes_deletes_and_gc_leaves_nothing_half_done() {
    let dir = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut ops_total = 0usize;
    let (mut interrupted_ingests, mut unrecorded_blobs) = (0usize, 0usize);
    for run in 0..KILLS {
        let mut d = start(dir.path(), run);
        let log = std::fs::read_to_string(&d.log).unwrap();
        assert!(
            !log.contains("whose blob is missing"),
            "run {run}: reconcile had to repair a record: {log}"
        );
        let recorded = check_records(&d);
        // Evidence of where the last kill landed: an interrupted ingest, or a blob published
        // but not (or no longer) recorded.
        let ingests = std::fs::read_dir(dir.path().join("root/content/ingest"))
            .unwrap()
            .count();
        let blobs = std::fs::read_dir(dir.path().join("root/content/blobs/sha256"))
            .unwrap()
            .count();
        interrupted_ingests += usize::from(ingests > 0);
        unrecorded_blobs += usize::from(blobs > recorded);

        // The workload: writes (kept by a gc.root label, or not), removals and collections.
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (socket, dir, stop) = (d.socket.clone(), dir.path().to_path_buf(), stop.clone());
            let mut rng = Rng(rng.next() | 1);
            std::thread::spawn(move || {
                let mut ops = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let size = 4096 + (rng.next() % (3 << 19)) as usize;
                    let byte = (rng.next() % 251) as u8;
                    let data: Vec<u8> = (0..size).map(|i| byte ^ (i % 253) as u8).collect();
                    let f = dir.join(format!("data-{}", rng.next()));
                    std::fs::write(&f, &data).unwrap();
                    let root = !rng.next().is_multiple_of(3);
                    let mut args = vec!["content", "put", f.to_str().unwrap()];
                    if root {
                        args.extend(["-l", "containerd.io/gc.root=1"]);
                    }
                    let _ = ctl(&socket, &args);
                    let _ = std::fs::remove_file(&f);
                    if rng.next().is_multiple_of(4) {
                        if let Ok(list) =
                            String::from_utf8(ctl(&socket, &["content", "ls", "-q"]).stdout)
                        {
                            if let Some(victim) = list.lines().next() {
                                let _ = ctl(&socket, &["content", "rm", victim]);
                            }
                        }
                    }
                    if rng.next().is_multiple_of(3) {
                        let _ = ctl(&socket, &["gc"]);
                    }
                    ops += 1;
                }
                ops
            })
        };
        let wait = Duration::from_millis(30 + rng.next() % 600);
        std::thread::sleep(wait);
        d.child.kill().unwrap();
        d.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        let ops = worker.join().unwrap();
        ops_total += ops;
        println!(
            "run {run}: {recorded} records verified ({ingests} ingests, {blobs} blobs on disk), \
             killed after {wait:?}, {ops} workload rounds"
        );
    }

    let d = start(dir.path(), KILLS);
    let log = std::fs::read_to_string(&d.log).unwrap();
    assert!(!log.contains("whose blob is missing"), "{log}");
    let n = check_records(&d);
    // Work continues: a new write and a clean collection.
    let f = dir.path().join("after");
    std::fs::write(&f, b"after the crashes").unwrap();
    let out = ctl(
        &d.socket,
        &[
            "content",
            "put",
            f.to_str().unwrap(),
            "-l",
            "containerd.io/gc.root=1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ctl(&d.socket, &["gc", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    // After a collection every blob on disk is recorded: nothing invisible is left.
    let blobs = std::fs::read_dir(dir.path().join("root/content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, check_records(&d), "unrecorded blobs left after gc");
    println!(
        "{KILLS} SIGKILLs, {ops_total} workload rounds, {n} records verified at the end; \
         restarts finding an interrupted ingest: {interrupted_ingests}, finding unrecorded \
         blobs: {unrecorded_blobs}; {:?} in all",
        started.elapsed()
    );
}
