//! Crash safety of the snapshotters: a child process creates, commits, views and removes
//! snapshots in a loop and is killed with SIGKILL at a varying moment; after each kill the
//! snapshotter is reopened and must show nothing half-done: every record has its directory,
//! every directory has a record (no temporary or half-removed ones left), every committed
//! snapshot holds the file written before its commit, and new work succeeds.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use berth_engine::snapshots::{
    native::Native, overlay::Overlay, Info, Kind, Labels, Mount, Snapshotter,
};

const CHILD_ENV: &str = "BERTH_SNAPSHOT_CRASH_CHILD";
const KILLS: usize = 30;

fn open(kind: &str, root: &Path) -> Box<dyn Snapshotter> {
    match kind {
        "overlayfs" => Box::new(Overlay::open(root).expect("open overlayfs")),
        _ => Box::new(Native::open(root).expect("open native")),
    }
}

/// The directory to write an unmounted active snapshot's changes into: overlay's upperdir,
/// or the bind source.
fn writable_dir(m: &[Mount]) -> PathBuf {
    m[0].options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(&m[0].source))
}

/// The child's endless workload (run by the parent with `--ignored --exact`).
#[test]
#[ignore = "run by crash tests as a child process"]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        panic!("{CHILD_ENV} is not set: this test is the child of the crash tests")
    };
    let (kind, root) = spec.split_once(':').expect("kind:root");
    let sn = open(kind, Path::new(root));
    // Continue numbering after what earlier children left, so keys stay unique.
    let mut n = 0u64;
    sn.walk(&[], &mut |_| {
        n += 1;
        Ok(())
    })
    .unwrap();
    let mut i = n * 1000 + std::process::id() as u64 % 1000 * 1_000_000;
    let mut chain: Vec<String> = Vec::new();
    loop {
        i += 1;
        let parent = chain.last().cloned().unwrap_or_default();
        let key = format!("active-{i}");
        let m = sn.prepare(&key, &parent, Labels::new()).unwrap();
        let name = format!("layer-{i}");
        std::fs::write(writable_dir(&m).join("layer"), name.as_bytes()).unwrap();
        sn.commit(&name, &key, Labels::new()).unwrap();
        chain.push(name.clone());
        let view = format!("view-{i}");
        sn.view(&view, &name, Labels::new()).unwrap();
        sn.remove(&view).unwrap();
        if chain.len() == 4 {
            while let Some(top) = chain.pop() {
                sn.remove(&top).unwrap();
            }
        }
    }
}

fn check_consistent(kind: &str, root: &Path) -> usize {
    let sn = open(kind, root);
    let mut infos: Vec<Info> = Vec::new();
    sn.walk(&[], &mut |i| {
        infos.push(i.clone());
        Ok(())
    })
    .unwrap();
    let dirs: BTreeSet<String> = std::fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        dirs.iter().all(|d| d.parse::<u64>().is_ok()),
        "leftover temporary or removal directories after reopen: {dirs:?}"
    );
    assert_eq!(
        dirs.len(),
        infos.len(),
        "directories {dirs:?} vs records {infos:?}"
    );
    for i in &infos {
        if i.kind == Kind::Committed {
            // Look through a view's mounts: the bind source or the topmost lowerdir.
            let key = format!("check-{}", i.name);
            let m = sn.view(&key, &i.name, Labels::new()).unwrap();
            let top = m[0]
                .options
                .iter()
                .find_map(|o| o.strip_prefix("lowerdir="))
                .map(|l| PathBuf::from(l.split(':').next().unwrap()))
                .unwrap_or_else(|| PathBuf::from(&m[0].source));
            let got = std::fs::read_to_string(top.join("layer")).unwrap_or_default();
            assert_eq!(got, i.name, "committed {} lacks its file", i.name);
            sn.remove(&key).unwrap();
        }
    }
    // New work still succeeds.
    sn.prepare("after-crash", "", Labels::new()).unwrap();
    sn.commit("after-crash-c", "after-crash", Labels::new())
        .unwrap();
    sn.remove("after-crash-c").unwrap();
    sn.close().unwrap();
    infos.len()
}

fn crash_loop(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let mut max_records = 0;
    for k in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child", "--nocapture"])
            .env(CHILD_ENV, format!("{kind}:{}", root.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // A varying moment: 20..120 ms into the child's life, by the clock's low bits.
        let jitter = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 100;
        std::thread::sleep(Duration::from_millis(20 + u64::from(jitter)));
        if let Some(st) = child.try_wait().unwrap() {
            panic!("kill {k}: the child ended on its own ({st}): its workload failed");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        max_records = max_records.max(check_consistent(kind, &root));
    }
    eprintln!(
        "{kind}: {KILLS} SIGKILLs, each followed by a consistent reopen (up to {max_records} records), in {:.1}s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn native_survives_sigkill() {
    crash_loop("native");
}

#[test]
fn overlayfs_survives_sigkill() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP overlayfs_survives_sigkill: needs root (overlayfs chowns the upper root)");
        return;
    }
    crash_loop("overlayfs");
}
