//! berth's default seccomp policy, one list for every producer of specs (berthd's generated
//! specs, berth-cri's `RuntimeDefault`).
//!
//! Where it comes from: Docker's default profile (moby `profiles/seccomp/default.json`, which
//! containerd's `contrib/seccomp` and CRI's `RuntimeDefault` reproduce) keeps from containers
//! the system calls that change the kernel or the node (modules, kexec, reboot, clocks,
//! swap, accounting), escape or rebuild namespaces and mounts (mount, unshare, setns,
//! pivot_root, the new mount API), reach into other processes (ptrace, process_vm_*, kcmp),
//! and expose kernel attack surface (bpf, perf_event_open, userfaultfd, keyrings,
//! open_by_handle_at). berth writes that as a **deny list** ([`DENIED`], `EPERM`) with
//! `SCMP_ACT_ALLOW` as the default, rather than Docker's ~350-entry allow list: shorter to
//! audit, and the capability set already stops most of the rest. Like Docker's profile, a
//! capability granted to the container lifts the calls it is meant for ([`ALLOWED_BY_CAP`]:
//! `CAP_SYS_ADMIN` mount/unshare/setns…, `CAP_SYS_PTRACE` ptrace…, `CAP_SYS_TIME` the
//! clocks…), so adding a capability in a pod spec works as it does on containerd.

/// System calls refused with EPERM by default.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
];

/// Denied calls a capability lifts (Docker's `includes.caps` rules, restricted to
/// [`DENIED`]).
pub const ALLOWED_BY_CAP: &[(&str, &[&str])] = &[
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "setns",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "clock_settime", "clock_adjtime"],
    ),
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// [`DENIED`] less what `caps` (`CAP_…` names) lift.
pub fn denied_with(caps: &[&str]) -> Vec<&'static str> {
    let lifted: Vec<&str> = ALLOWED_BY_CAP
        .iter()
        .filter(|(cap, _)| caps.contains(cap))
        .flat_map(|(_, calls)| calls.iter().copied())
        .collect();
    DENIED
        .iter()
        .copied()
        .filter(|c| !lifted.contains(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_lift_their_calls_only() {
        assert_eq!(denied_with(&[]), DENIED);
        let admin = denied_with(&["CAP_SYS_ADMIN"]);
        assert!(!admin.contains(&"mount") && !admin.contains(&"setns"));
        assert!(admin.contains(&"ptrace") && admin.contains(&"reboot"));
        for (_, calls) in ALLOWED_BY_CAP {
            for c in *calls {
                assert!(DENIED.contains(c), "{c} is not denied in the first place");
            }
        }
    }
}
