//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats — from berthd's
//! Tasks.Metrics (the container's cgroup, v2 or v1, read by berthd) and Snapshots.Usage (the
//! writable layer) — and the cgroup writes of UpdateContainerResources.
//!
//! CRI's figures from cgroup files, as containerd's: CPU usage in nanoseconds and
//! `usage_nano_cores` from the previous reading of the same container; memory working set =
//! usage − inactive file pages; RSS = anonymous memory. A pod's figures are its pause's and
//! its containers' summed, its network the pod's interfaces (`/proc/<pause>/net/dev`).

use std::path::Path;

use berth_api::proto::tasks::MetricsResponse;

use super::{Containers, Record};
use crate::error::{Error, Result};
use crate::proto::{
    ContainerAttributes, ContainerStats, ContainerStatsFilter, CpuUsage, FilesystemIdentifier,
    FilesystemUsage, LinuxContainerResources, LinuxPodSandboxStats, MemoryUsage,
    NetworkInterfaceUsage, NetworkUsage, PodSandboxAttributes, PodSandboxStats,
    PodSandboxStatsFilter, ProcessUsage, UInt64Value,
};

fn u(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

/// CPU and memory of one cgroup reading; `prev` is the last (usage ns, at ns) of the same
/// container, for the rate.
fn cpu_memory(m: &MetricsResponse, prev: Option<(u64, i64)>) -> (CpuUsage, MemoryUsage) {
    let at = m.timestamp;
    let usage_ns = m.cpu.as_ref().map_or(0, |c| c.usage_usec) * 1000;
    let nano_cores = prev
        .filter(|(_, t)| at > *t)
        .map(|(p, t)| usage_ns.saturating_sub(p) * 1_000_000_000 / (at - t) as u64);
    let mem = m.memory.clone().unwrap_or_default();
    let stat = |k: &str| mem.stat.get(k).copied().unwrap_or(0);
    let inactive = if m.cgroup_version == 1 {
        stat("total_inactive_file").max(stat("inactive_file"))
    } else {
        stat("inactive_file")
    };
    let working_set = mem.usage.saturating_sub(inactive);
    let rss = if m.cgroup_version == 1 {
        stat("rss")
    } else {
        stat("anon")
    };
    let cpu = CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: u(usage_ns),
        usage_nano_cores: nano_cores.and_then(u),
        psi: None,
    };
    let memory = MemoryUsage {
        timestamp: at,
        working_set_bytes: u(working_set),
        available_bytes: (mem.limit > 0)
            .then(|| mem.limit.saturating_sub(working_set))
            .and_then(u),
        usage_bytes: u(mem.usage),
        rss_bytes: u(rss),
        page_faults: u(stat("pgfault")),
        major_page_faults: u(stat("pgmajfault")),
        psi: None,
    };
    (cpu, memory)
}

/// The interfaces of a network namespace from `/proc/<pid>/net/dev` (loopback left out).
fn network(pid: u32) -> Option<NetworkUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut ifaces = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 11 {
            continue;
        }
        ifaces.push(NetworkInterfaceUsage {
            name: name.to_owned(),
            rx_bytes: u(f[0]),
            rx_errors: u(f[2]),
            tx_bytes: u(f[8]),
            tx_errors: u(f[10]),
        });
    }
    let default = ifaces
        .iter()
        .find(|i| i.name == "eth0")
        .or(ifaces.first())
        .cloned();
    Some(NetworkUsage {
        timestamp: crate::now_nanos(),
        default_interface: default,
        interfaces: ifaces,
    })
}

impl Containers {
    /// The stats of one container: attributes always; CPU and memory while it has a
    /// task; the writable layer's usage.
    async fn stats_of(&self, r: &Record) -> Result<ContainerStats> {
        let attributes = ContainerAttributes {
            id: r.id.clone(),
            metadata: r.config.metadata.clone(),
            labels: r.config.labels.clone(),
            annotations: r.config.annotations.clone(),
        };
        let mut s = ContainerStats {
            attributes: Some(attributes),
            ..Default::default()
        };
        match self.berthd.metrics(&r.id).await {
            Ok(m) => {
                let prev = self.cpu.lock().expect("cpu lock").get(&r.id).copied();
                let (cpu, memory) = cpu_memory(&m, prev);
                if let Some(c) = &cpu.usage_core_nano_seconds {
                    self.cpu
                        .lock()
                        .expect("cpu lock")
                        .insert(r.id.clone(), (c.value, m.timestamp));
                }
                s.cpu = Some(cpu);
                s.memory = Some(memory);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::debug!(container = %r.id, "no metrics: {}", berth_api::errdefs::chain(&e))
            }
        }
        match self.berthd.snapshot_usage("", &r.id).await {
            Ok((bytes, inodes)) => {
                s.writable_layer = Some(FilesystemUsage {
                    timestamp: crate::now_nanos(),
                    fs_id: Some(FilesystemIdentifier {
                        mountpoint: self.images.snapshotter_root().await.unwrap_or_default(),
                    }),
                    used_bytes: u(bytes.max(0) as u64),
                    inodes_used: u(inodes.max(0) as u64),
                })
            }
            Err(e) => {
                tracing::debug!(container = %r.id, "no layer usage: {}", berth_api::errdefs::chain(&e))
            }
        }
        Ok(s)
    }

    /// ContainerStats.
    pub async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let r = self.get(id).await?;
        self.stats_of(&r).await
    }

    /// ListContainerStats.
    pub async fn list_stats(
        &self,
        f: Option<&ContainerStatsFilter>,
    ) -> Result<Vec<ContainerStats>> {
        let mut out = Vec::new();
        for r in self.records().await? {
            let keep = f.is_none_or(|f| {
                (f.id.is_empty() || r.id.starts_with(&f.id))
                    && (f.pod_sandbox_id.is_empty() || r.sandbox_id.starts_with(&f.pod_sandbox_id))
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| r.config.labels.get(k) == Some(v))
            });
            if keep {
                out.push(self.stats_of(&r).await?);
            }
        }
        Ok(out)
    }

    /// The stats of the pod `rec`: its pause's and containers' CPU and memory summed, its
    /// network, its process count, and its containers' stats.
    async fn pod_stats(
        &self,
        rec: &crate::sandbox::Record,
        ready: bool,
    ) -> Result<PodSandboxStats> {
        let mut containers = Vec::new();
        for r in self
            .records()
            .await?
            .into_iter()
            .filter(|r| r.sandbox_id == rec.id)
        {
            containers.push(self.stats_of(&r).await?);
        }
        let mut readings = Vec::new();
        if let Ok(m) = self.berthd.metrics(&rec.id).await {
            readings.push(m);
        }
        for c in &containers {
            let id = c.attributes.as_ref().map_or("", |a| a.id.as_str());
            if let Ok(m) = self.berthd.metrics(id).await {
                readings.push(m);
            }
        }
        let now = crate::now_nanos();
        let (mut cpu_ns, mut usage, mut ws, mut rss, mut procs) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for m in &readings {
            let (c, mem) = cpu_memory(m, None);
            cpu_ns += c.usage_core_nano_seconds.map_or(0, |v| v.value);
            usage += mem.usage_bytes.map_or(0, |v| v.value);
            ws += mem.working_set_bytes.map_or(0, |v| v.value);
            rss += mem.rss_bytes.map_or(0, |v| v.value);
            procs += m.pids.as_ref().map_or(0, |p| p.current);
        }
        let pause_pid = if ready {
            self.berthd
                .process(&rec.id, "")
                .await
                .map(|p| p.pid)
                .unwrap_or(0)
        } else {
            0
        };
        Ok(PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: rec.id.clone(),
                metadata: rec.config.metadata.clone(),
                labels: rec.config.labels.clone(),
                annotations: rec.config.annotations.clone(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(CpuUsage {
                    timestamp: now,
                    usage_core_nano_seconds: u(cpu_ns),
                    ..Default::default()
                }),
                memory: Some(MemoryUsage {
                    timestamp: now,
                    working_set_bytes: u(ws),
                    usage_bytes: u(usage),
                    rss_bytes: u(rss),
                    ..Default::default()
                }),
                network: (pause_pid > 0 && rec.netns().is_some())
                    .then(|| network(pause_pid))
                    .flatten(),
                process: Some(ProcessUsage {
                    timestamp: now,
                    process_count: u(procs),
                }),
                containers,
                io: None,
            }),
            windows: None,
        })
    }

    /// PodSandboxStats.
    pub async fn sandbox_stats(&self, id: &str) -> Result<PodSandboxStats> {
        let all = self.sandboxes.all().await?;
        let found = self.sandboxes.get(id).await?;
        let (rec, ready) = found
            .and_then(|r| all.into_iter().find(|(a, _)| a.id == r.id))
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id:?} not found")))?;
        self.pod_stats(&rec, ready).await
    }

    /// ListPodSandboxStats.
    pub async fn list_sandbox_stats(
        &self,
        f: Option<&PodSandboxStatsFilter>,
    ) -> Result<Vec<PodSandboxStats>> {
        let mut out = Vec::new();
        for (rec, ready) in self.sandboxes.all().await? {
            let keep = f.is_none_or(|f| {
                (f.id.is_empty() || rec.id.starts_with(&f.id))
                    && f.label_selector
                        .iter()
                        .all(|(k, v)| rec.config.labels.get(k) == Some(v))
            });
            if keep {
                out.push(self.pod_stats(&rec, ready).await?);
            }
        }
        Ok(out)
    }
}

/// Writes kubelet's new resources into a running container's cgroup `cgroup` (v2 files, or
/// the v1 controllers' on a v1 or hybrid host).
pub fn apply_resources(cgroup: &str, r: &LinuxContainerResources) -> Result<()> {
    let root = Path::new("/sys/fs/cgroup");
    let rel = cgroup.trim_start_matches('/');
    let write = |path: std::path::PathBuf, value: String| -> Result<()> {
        std::fs::write(&path, &value).map_err(|source| Error::Io {
            what: format!("write {value:?} to {}", path.display()),
            source,
        })
    };
    if root.join("cgroup.controllers").exists() {
        let d = root.join(rel);
        if r.memory_limit_in_bytes > 0 {
            write(d.join("memory.max"), r.memory_limit_in_bytes.to_string())?;
        }
        if r.cpu_quota != 0 || r.cpu_period > 0 {
            let quota = if r.cpu_quota > 0 {
                r.cpu_quota.to_string()
            } else {
                "max".into()
            };
            let period = if r.cpu_period > 0 {
                r.cpu_period
            } else {
                100_000
            };
            write(d.join("cpu.max"), format!("{quota} {period}"))?;
        }
        if r.cpu_shares > 0 {
            // runc's conversion of cgroup v1 shares (2..262144) to v2 weight (1..10000).
            let weight = 1 + ((r.cpu_shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            write(d.join("cpu.weight"), weight.to_string())?;
        }
        if !r.cpuset_cpus.is_empty() {
            write(d.join("cpuset.cpus"), r.cpuset_cpus.clone())?;
        }
        if !r.cpuset_mems.is_empty() {
            write(d.join("cpuset.mems"), r.cpuset_mems.clone())?;
        }
        for (k, v) in &r.unified {
            write(d.join(k), v.clone())?;
        }
        return Ok(());
    }
    let v1 = |c: &str| root.join(c).join(rel);
    if r.memory_limit_in_bytes > 0 {
        write(
            v1("memory").join("memory.limit_in_bytes"),
            r.memory_limit_in_bytes.to_string(),
        )?;
    }
    if r.cpu_period > 0 {
        write(
            v1("cpu").join("cpu.cfs_period_us"),
            r.cpu_period.to_string(),
        )?;
    }
    if r.cpu_quota != 0 {
        write(v1("cpu").join("cpu.cfs_quota_us"), r.cpu_quota.to_string())?;
    }
    if r.cpu_shares > 0 {
        write(v1("cpu").join("cpu.shares"), r.cpu_shares.to_string())?;
    }
    if !r.cpuset_cpus.is_empty() {
        write(v1("cpuset").join("cpuset.cpus"), r.cpuset_cpus.clone())?;
    }
    if !r.cpuset_mems.is_empty() {
        write(v1("cpuset").join("cpuset.mems"), r.cpuset_mems.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::proto::tasks::{CpuStats, MemoryStats};

    #[test]
    fn working_set_rss_and_rate() {
        let m = MetricsResponse {
            timestamp: 2_000_000_000,
            cgroup_version: 2,
            memory: Some(MemoryStats {
                usage: 10_000,
                limit: 50_000,
                stat: [
                    ("inactive_file".to_owned(), 4_000),
                    ("anon".to_owned(), 3_000),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            })
            .into(),
            cpu: Some(CpuStats {
                usage_usec: 1_500_000,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let (cpu, mem) = cpu_memory(&m, Some((1_000_000_000, 1_000_000_000)));
        assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 1_500_000_000);
        // 0.5 s of CPU over 1 s: half a core.
        assert_eq!(cpu.usage_nano_cores.unwrap().value, 500_000_000);
        assert_eq!(mem.working_set_bytes.unwrap().value, 6_000);
        assert_eq!(mem.available_bytes.unwrap().value, 44_000);
        assert_eq!(mem.rss_bytes.unwrap().value, 3_000);
        assert!(network(std::process::id()).is_some());
    }
}
