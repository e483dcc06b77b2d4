//! `Tasks.Metrics`: a task's cgroup statistics, read by berthd straight from cgroupfs.
//!
//! The task's cgroup ([`super::cgroups`]: its spec's, or berthd's default) is read under
//! the unified hierarchy (cgroup v2:
//! `memory.current`, `memory.peak`, `memory.max`, `memory.stat`, `memory.events`, `cpu.stat`,
//! `pids.current`, `pids.max`, `io.stat`) or, on a v1 or hybrid host, under each v1
//! controller, where the executor (libcontainer, runc) put it — then the v1 equivalents are
//! reported, converted to the same units (`cpuacct.usage` ns → µs, `cpuacct.stat` ticks → µs,
//! `blkio.throttle.*` per device). A task whose cgroup is in neither gets an error saying
//! which hierarchies were looked at.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Error;

/// The statistics of a task's cgroup (the Tasks.Metrics message's figures).
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub container_id: String,
    /// When they were read.
    pub timestamp: SystemTime,
    /// 2 or 1: which hierarchy the figures come from.
    pub cgroup_version: u32,
    /// The task's cgroup, relative to the hierarchy's root.
    pub cgroup_path: String,
    pub memory: MemoryStats,
    pub cpu: CpuStats,
    pub pids: PidsStats,
    pub io: Vec<IoStats>,
}

/// Memory of the cgroup, in bytes (0: not available).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// v2 memory.current (v1 memory.usage_in_bytes).
    pub usage: u64,
    /// v2 memory.peak (v1 memory.max_usage_in_bytes).
    pub peak: u64,
    /// The limit; 0 when unlimited.
    pub limit: u64,
    /// A selection of memory.stat (the hierarchy's own key names) and the OOM counters as
    /// `oom` and `oom_kill`.
    pub stat: BTreeMap<String, u64>,
}

/// CPU time of the cgroup, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub usage_usec: u64,
    pub user_usec: u64,
    pub system_usec: u64,
    pub nr_periods: u64,
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

/// Processes of the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// 0 when unlimited.
    pub limit: u64,
}

/// One block device's I/O.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// Keys of `memory.stat` worth a look (v2 names).
const V2_MEMORY_KEYS: &[&str] = &[
    "anon",
    "file",
    "active_file",
    "inactive_file",
    "kernel",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "pgfault",
    "pgmajfault",
];

/// Their v1 counterparts (v1 names).
const V1_MEMORY_KEYS: &[&str] = &[
    "cache",
    "rss",
    "active_file",
    "inactive_file",
    "total_inactive_file",
    "rss_huge",
    "shmem",
    "mapped_file",
    "dirty",
    "writeback",
    "pgfault",
    "pgmajfault",
];

/// `USER_HZ`, the unit of `cpuacct.stat` (100 on every Linux architecture berth targets).
const USER_HZ: u64 = 100;

/// Reads the statistics of the task of container `id`, whose cgroup is `cgroup` (relative to
/// each hierarchy's root under `root`).
pub fn read(root: &Path, id: &str, cgroup: &str) -> Result<Metrics, Error> {
    let rel = cgroup.trim_start_matches('/');
    let mut m = Metrics {
        container_id: id.to_owned(),
        timestamp: SystemTime::now(),
        cgroup_version: 0,
        cgroup_path: format!("/{rel}"),
        memory: MemoryStats::default(),
        cpu: CpuStats::default(),
        pids: PidsStats::default(),
        io: Vec::new(),
    };
    if root.join("cgroup.controllers").exists() {
        let dir = root.join(rel);
        if !dir.join("cgroup.procs").exists() {
            return Err(Error::NotFound(format!(
                "task {id:?} has no cgroup {} (cgroup v2)",
                dir.display()
            )));
        }
        m.cgroup_version = 2;
        v2(&dir, &mut m);
        return Ok(m);
    }
    let v1 = |c: &str| root.join(c).join(rel);
    let looked: Vec<PathBuf> = ["memory", "cpuacct", "pids"]
        .iter()
        .map(|c| v1(c))
        .collect();
    if !looked.iter().any(|d| d.join("cgroup.procs").exists()) {
        return Err(Error::FailedPrecondition(format!(
            "metrics need the task's cgroup: {} has no cgroup v2 hierarchy (this host runs \
             cgroup v1) and the task is in none of {}",
            root.display(),
            looked
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    m.cgroup_version = 1;
    v1_read(
        &v1("memory"),
        &v1("cpu"),
        &v1("cpuacct"),
        &v1("pids"),
        &v1("blkio"),
        &mut m,
    );
    Ok(m)
}

fn read_u64(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A limit file: "max" (v2) or a huge page-rounded value (v1) is 0, "unlimited".
fn read_limit(path: &Path) -> u64 {
    let v = read_u64(path);
    if v >= 1 << 62 {
        0
    } else {
        v
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
fn flat_keyed(path: &Path) -> HashMap<String, u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn v2(dir: &Path, m: &mut Metrics) {
    let stat = flat_keyed(&dir.join("memory.stat"));
    let events = flat_keyed(&dir.join("memory.events"));
    let mut mem = MemoryStats {
        usage: read_u64(&dir.join("memory.current")),
        peak: read_u64(&dir.join("memory.peak")),
        limit: read_limit(&dir.join("memory.max")),
        ..Default::default()
    };
    for k in V2_MEMORY_KEYS {
        if let Some(v) = stat.get(*k) {
            mem.stat.insert((*k).to_owned(), *v);
        }
    }
    for k in ["oom", "oom_kill"] {
        mem.stat
            .insert(k.to_owned(), events.get(k).copied().unwrap_or(0));
    }
    m.memory = mem;
    let cpu = flat_keyed(&dir.join("cpu.stat"));
    let g = |k: &str| cpu.get(k).copied().unwrap_or(0);
    m.cpu = CpuStats {
        usage_usec: g("usage_usec"),
        user_usec: g("user_usec"),
        system_usec: g("system_usec"),
        nr_periods: g("nr_periods"),
        nr_throttled: g("nr_throttled"),
        throttled_usec: g("throttled_usec"),
    };
    m.pids = PidsStats {
        current: read_u64(&dir.join("pids.current")),
        limit: read_limit(&dir.join("pids.max")),
    };
    m.io = parse_io_stat(&std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default());
}

/// `io.stat`: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` per device.
fn parse_io_stat(text: &str) -> Vec<IoStats> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some((major, minor)) = f.next().and_then(dev) else {
            continue;
        };
        let mut s = IoStats {
            major,
            minor,
            ..Default::default()
        };
        for kv in f {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = v.parse().unwrap_or(0);
            match k {
                "rbytes" => s.rbytes = v,
                "wbytes" => s.wbytes = v,
                "rios" => s.rios = v,
                "wios" => s.wios = v,
                _ => {}
            }
        }
        out.push(s);
    }
    out
}

fn dev(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn v1_read(memory: &Path, cpu: &Path, cpuacct: &Path, pids: &Path, blkio: &Path, m: &mut Metrics) {
    let stat = flat_keyed(&memory.join("memory.stat"));
    let oom = flat_keyed(&memory.join("memory.oom_control"));
    let mut mem = MemoryStats {
        usage: read_u64(&memory.join("memory.usage_in_bytes")),
        peak: read_u64(&memory.join("memory.max_usage_in_bytes")),
        limit: read_limit(&memory.join("memory.limit_in_bytes")),
        ..Default::default()
    };
    for k in V1_MEMORY_KEYS {
        if let Some(v) = stat.get(*k) {
            mem.stat.insert((*k).to_owned(), *v);
        }
    }
    mem.stat.insert(
        "oom_kill".to_owned(),
        oom.get("oom_kill").copied().unwrap_or(0),
    );
    m.memory = mem;
    let acct = flat_keyed(&cpuacct.join("cpuacct.stat"));
    let throttle = flat_keyed(&cpu.join("cpu.stat"));
    let tick_usec = 1_000_000 / USER_HZ;
    m.cpu = CpuStats {
        usage_usec: read_u64(&cpuacct.join("cpuacct.usage")) / 1000,
        user_usec: acct.get("user").copied().unwrap_or(0) * tick_usec,
        system_usec: acct.get("system").copied().unwrap_or(0) * tick_usec,
        nr_periods: throttle.get("nr_periods").copied().unwrap_or(0),
        nr_throttled: throttle.get("nr_throttled").copied().unwrap_or(0),
        throttled_usec: throttle.get("throttled_time").copied().unwrap_or(0) / 1000,
    };
    m.pids = PidsStats {
        current: read_u64(&pids.join("pids.current")),
        limit: read_limit(&pids.join("pids.max")),
    };
    m.io = parse_blkio(
        &std::fs::read_to_string(blkio.join("blkio.throttle.io_service_bytes")).unwrap_or_default(),
        &std::fs::read_to_string(blkio.join("blkio.throttle.io_serviced")).unwrap_or_default(),
    );
}

/// v1 `blkio.throttle.io_service_bytes` and `io_serviced`: `MAJ:MIN Read|Write|… N` lines.
fn parse_blkio(bytes: &str, ios: &str) -> Vec<IoStats> {
    let mut devs: std::collections::BTreeMap<(u64, u64), IoStats> = Default::default();
    for (text, counts) in [(bytes, false), (ios, true)] {
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [d, op, v] = f[..] else { continue };
            let Some((major, minor)) = dev(d) else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            let s = devs.entry((major, minor)).or_insert_with(|| IoStats {
                major,
                minor,
                ..Default::default()
            });
            match (op, counts) {
                ("Read", false) => s.rbytes = v,
                ("Write", false) => s.wbytes = v,
                ("Read", true) => s.rios = v,
                ("Write", true) => s.wios = v,
                _ => {}
            }
        }
    }
    devs.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn v2_files_are_read_with_their_units() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cgroup.controllers", "cpu memory pids io\n");
        let d = root.path().join("containers.slice/default-c/init");
        write(&d, "cgroup.procs", "42\n");
        write(&d, "memory.current", "1048576\n");
        write(&d, "memory.peak", "2097152\n");
        write(&d, "memory.max", "max\n");
        write(
            &d,
            "memory.stat",
            "anon 4096\nfile 8192\nunknown 1\npgfault 7\n",
        );
        write(
            &d,
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        );
        write(
            &d,
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 900\n",
        );
        write(&d, "pids.current", "3\n");
        write(&d, "pids.max", "20\n");
        write(
            &d,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let m = read(root.path(), "c", "/containers.slice/default-c/init").unwrap();
        assert_eq!(m.cgroup_version, 2);
        assert_eq!(m.cgroup_path, "/containers.slice/default-c/init");
        assert_eq!(m.memory.usage, 1048576);
        assert_eq!(m.memory.peak, 2097152);
        assert_eq!(m.memory.limit, 0);
        assert_eq!(m.memory.stat.get("anon").copied(), Some(4096));
        assert_eq!(m.memory.stat.get("oom_kill").copied(), Some(1));
        assert!(!m.memory.stat.contains_key("unknown"));
        assert_eq!(m.cpu.nr_throttled, 4);
        assert_eq!(m.cpu.usage_usec, 1500);
        assert_eq!(m.pids.current, 3);
        assert_eq!(m.pids.limit, 20);
        assert_eq!(m.io[0].wbytes, 8192);
        assert_eq!(m.io[0].major, 8);
    }

    #[test]
    fn v1_files_are_converted() {
        let root = tempfile::tempdir().unwrap();
        let rel = "containers.slice/default-c/init";
        let mem = root.path().join("memory").join(rel);
        write(&mem, "cgroup.procs", "42\n");
        write(&mem, "memory.usage_in_bytes", "4096\n");
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(&mem, "memory.stat", "cache 10\nrss 20\n");
        write(
            &mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let acct = root.path().join("cpuacct").join(rel);
        write(&acct, "cpuacct.usage", "3000000\n");
        write(&acct, "cpuacct.stat", "user 2\nsystem 1\n");
        let cpu = root.path().join("cpu").join(rel);
        write(
            &cpu,
            "cpu.stat",
            "nr_periods 5\nnr_throttled 2\nthrottled_time 7000\n",
        );
        let blk = root.path().join("blkio").join(rel);
        write(
            &blk,
            "blkio.throttle.io_service_bytes",
            "8:0 Read 512\n8:0 Write 1024\nTotal 1536\n",
        );
        write(
            &blk,
            "blkio.throttle.io_serviced",
            "8:0 Read 1\n8:0 Write 2\n",
        );
        let m = read(root.path(), "c", "/containers.slice/default-c/init").unwrap();
        assert_eq!(m.cgroup_version, 1);
        assert_eq!(m.memory.usage, 4096);
        assert_eq!(m.memory.limit, 0);
        assert_eq!(m.memory.stat.get("rss").copied(), Some(20));
        assert_eq!(m.memory.stat.get("oom_kill").copied(), Some(2));
        assert_eq!(m.cpu.usage_usec, 3000);
        assert_eq!(m.cpu.user_usec, 20000);
        assert_eq!(m.cpu.throttled_usec, 7);
        assert_eq!(m.io[0].rbytes, 512);
        assert_eq!(m.io[0].wios, 2);
    }

    #[test]
    fn no_cgroup_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let e = read(root.path(), "c", "/containers.slice/default-c/init")
            .unwrap_err()
            .to_string();
        assert!(e.contains("this host runs cgroup v1"), "{e}");
        assert!(e.contains("memory/containers.slice/default-c/init"), "{e}");
    }
}
