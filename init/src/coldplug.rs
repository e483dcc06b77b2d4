//! Device-driven module loading: coldplug at boot and hotplug afterwards, without udev.
//!
//! Every device the kernel knows exposes a `modalias` (e.g.
//! `pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00` for a virtio NIC); `modules.alias`
//! (written by depmod) maps glob patterns over those strings to modules. **Coldplug** walks
//! `/sys/devices/**/modalias` once at boot and loads every matching module that the image
//! carries; **hotplug** listens to the kernel's uevents (`NETLINK_KOBJECT_UEVENT`) and does
//! the same for devices that appear later — a NIC or disk added to a running node (QEMU's
//! `device_add`). Loading goes through [`ModuleIndex`], so dependencies come first; modules
//! that do not depend on each other load in parallel (see [`load_parallel`]), which matters
//! because probing PCI devices is the slowest part of boot under emulation.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::console::Console;
use berth_layout::modules::Aliases;

use crate::modules::{module_name, ModuleError, ModuleIndex, Outcome};

/// Each module of a load with how it ended.
pub type Results = Vec<(String, Result<Outcome, ModuleError>)>;

/// `modules.alias`: glob patterns over modalias strings, each naming a module.
#[derive(Debug, Clone, Default)]
pub struct AliasTable {
    /// (pattern, module) in file order; patterns that are not valid globs are dropped.
    entries: Vec<(glob::Pattern, String)>,
}

impl AliasTable {
    /// Parses `modules.alias` text (`alias <pattern> <module>` lines) with the builder's
    /// parser ([`berth_layout::modules::Aliases`]); lines it skips are skipped here too.
    pub fn parse(text: &str) -> Self {
        let entries = Aliases::parse(text)
            .entries
            .into_iter()
            .filter_map(|a| Some((glob::Pattern::new(&a.pattern).ok()?, a.module)))
            .collect();
        Self { entries }
    }

    /// Reads `dir/modules.alias` (an empty table when missing).
    pub fn read(dir: &Path) -> Self {
        Self::parse(&std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default())
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no aliases.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Modules matching one modalias, in file order.
    pub fn lookup(&self, modalias: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (pattern, module) in &self.entries {
            if pattern.matches(modalias) && !out.contains(module) {
                out.push(module.clone());
            }
        }
        out
    }

    /// Modules matching any of `modaliases`, each once, in a stable order.
    pub fn modules_for<'a>(&self, modaliases: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for alias in modaliases {
            for module in self.lookup(alias) {
                if seen.insert(module.clone()) {
                    out.push(module);
                }
            }
        }
        out
    }
}

/// Every `modalias` value under `root` (normally `/sys/devices`), without following symlinks
/// (sysfs links back up the tree), sorted and de-duplicated.
pub fn modaliases_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name() == "modalias" {
                if let Ok(text) = std::fs::read_to_string(entry.path()) {
                    let text = text.trim();
                    if !text.is_empty() {
                        out.insert(text.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Loads `names` with their dependencies, running independent modules in parallel: the
/// plan is split into levels (a module's level is one more than its deepest dependency's),
/// and each level loads on up to `threads` threads before the next starts. Returns every
/// module of the plan with its outcome; a failure does not stop the rest (dependants of a
/// failed module are tried anyway: the kernel's answer names what is missing).
pub fn load_parallel(index: &ModuleIndex, names: &[String], threads: usize) -> Results {
    let mut results = Vec::new();
    let mut plan = Vec::new();
    for name in names {
        match index.plan(std::slice::from_ref(name)) {
            Ok(p) => plan.extend(p),
            Err(err) => results.push((module_name(name), Err(err))),
        }
    }
    let mut seen = HashSet::new();
    plan.retain(|n| seen.insert(n.clone()));
    for level in levels(index, &plan) {
        let chunk = level.len().div_ceil(threads.max(1)).max(1);
        let level_results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = level
                .chunks(chunk)
                .map(|group| {
                    scope.spawn(move || {
                        group
                            .iter()
                            .map(|n| (n.clone(), index.load_one(n)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        results.extend(level_results);
    }
    results
}

/// Splits an ordered plan (dependencies first) into levels of mutually independent modules.
pub fn levels(index: &ModuleIndex, plan: &[String]) -> Vec<Vec<String>> {
    let mut level_of: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Vec<String>> = Vec::new();
    for name in plan {
        let level = index
            .deps(name)
            .iter()
            .filter_map(|d| level_of.get(d.as_str()).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        level_of.insert(name, level);
        if out.len() <= level {
            out.resize_with(level + 1, Vec::new);
        }
        out[level].push(name.clone());
    }
    out
}

/// Coldplug: loads the modules for every device present now. Returns the outcomes.
pub fn coldplug(index: &ModuleIndex, aliases: &AliasTable, sys_devices: &Path) -> (usize, Results) {
    let modaliases = modaliases_under(sys_devices);
    let modules = aliases.modules_for(modaliases.iter().map(String::as_str));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    (modaliases.len(), load_parallel(index, &modules, threads))
}

/// Reports module outcomes: one info line listing what loaded, one warning per failure.
pub fn report(what: &str, results: &[(String, Result<Outcome, ModuleError>)], console: Console) {
    let mut loaded = Vec::new();
    for (name, result) in results {
        match result {
            Ok(Outcome::Loaded) => loaded.push(name.as_str()),
            Ok(_) => {}
            Err(err) => console.warn(&format!("{what}: {err}")),
        }
    }
    if !loaded.is_empty() {
        console.info(&format!("{what}: loaded {}", loaded.join(" ")));
    }
}

/// One kernel uevent: `ACTION@DEVPATH\0KEY=VALUE\0…`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind`…
    pub action: String,
    /// `/devices/…`.
    pub devpath: String,
    /// The device's MODALIAS, when it has one.
    pub modalias: Option<String>,
    /// SUBSYSTEM.
    pub subsystem: Option<String>,
}

/// Parses a kernel uevent datagram; `None` for anything else (e.g. udev's own messages,
/// which start with `libudev`).
pub fn parse_uevent(buf: &[u8]) -> Option<Uevent> {
    let mut parts = buf.split(|&b| b == 0).filter(|p| !p.is_empty());
    let header = std::str::from_utf8(parts.next()?).ok()?;
    let (action, devpath) = header.split_once('@')?;
    let mut event = Uevent {
        action: action.into(),
        devpath: devpath.into(),
        ..Uevent::default()
    };
    for part in parts {
        let Ok(text) = std::str::from_utf8(part) else {
            continue;
        };
        if let Some(v) = text.strip_prefix("MODALIAS=") {
            event.modalias = Some(v.to_string());
        } else if let Some(v) = text.strip_prefix("SUBSYSTEM=") {
            event.subsystem = Some(v.to_string());
        }
    }
    Some(event)
}

/// Opens the kernel uevent socket (before coldplug, so no device slips between the scan and
/// the listener).
pub fn open_uevent_socket() -> Result<std::os::fd::OwnedFd, nix::Error> {
    use nix::sys::socket::{
        bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkKObjectUEvent,
    )?;
    // Group 1: the kernel's own broadcast of uevents.
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 1))?;
    Ok(fd)
}

/// Hotplug loop: for every `add` uevent with a MODALIAS, loads the matching modules (and
/// reports them). Runs on its own thread for the life of the node.
pub fn hotplug_loop(
    fd: std::os::fd::OwnedFd,
    index: ModuleIndex,
    aliases: AliasTable,
    console: Console,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut done: HashSet<String> = HashSet::new();
    loop {
        let n = match nix::sys::socket::recv(
            fd.as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            // ENOBUFS: the kernel dropped events while we were busy; keep listening.
            Err(nix::errno::Errno::ENOBUFS) => {
                console.warn("hotplug: uevents were lost (receive buffer overflow)");
                continue;
            }
            Err(err) => {
                console.error(&format!(
                    "hotplug: cannot read uevents: {err}; hot-plugged devices get no drivers"
                ));
                return;
            }
        };
        let Some(event) = parse_uevent(&buf[..n]) else {
            continue;
        };
        if event.action != "add" {
            continue;
        }
        let Some(modalias) = event.modalias else {
            continue;
        };
        let modules: Vec<String> = aliases
            .lookup(&modalias)
            .into_iter()
            .filter(|m| !done.contains(m))
            .collect();
        if modules.is_empty() {
            continue;
        }
        console.debug(&format!(
            "hotplug: {} ({modalias}) needs {}",
            event.devpath,
            modules.join(" ")
        ));
        let results = load_parallel(&index, &modules, 1);
        for (name, result) in &results {
            if result.is_ok() {
                done.insert(name.clone());
            }
        }
        report("hotplug", &results, console);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIAS: &str = "# Aliases extracted from modules themselves.\n\
alias pci:v00001AF4d00001000sv*sd00000001bc*sc*i* virtio_net\n\
alias virtio:d00000001v* virtio_net\n\
alias virtio:d00000002v* virtio_blk\n\
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n\
alias acpi*:PNP0C0C:* button\n\
alias fs-overlay overlay\n";

    #[test]
    fn aliases_match_globs() {
        let table = AliasTable::parse(ALIAS);
        assert_eq!(table.len(), 6);
        assert_eq!(table.lookup("virtio:d00000001v00001AF4"), ["virtio_net"]);
        assert_eq!(
            table.lookup("pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"),
            ["virtio_net", "virtio_pci"]
        );
        assert_eq!(table.lookup("acpi:PNP0C0C:"), ["button"]);
        assert!(table
            .lookup("pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00")
            .is_empty());
        let modules = table.modules_for([
            "virtio:d00000002v00001AF4",
            "virtio:d00000001v00001AF4",
            "virtio:d00000002v00001AF4",
        ]);
        assert_eq!(modules, ["virtio_blk", "virtio_net"]);
    }

    #[test]
    fn walks_sysfs_modaliases() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("pci0000:00/0000:00:02.0");
        std::fs::create_dir_all(dev.join("virtio0")).unwrap();
        std::fs::write(
            dev.join("modalias"),
            "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\n",
        )
        .unwrap();
        std::fs::write(dev.join("virtio0/modalias"), "virtio:d00000001v00001AF4\n").unwrap();
        std::fs::write(dir.path().join("pci0000:00/modalias"), "\n").unwrap();
        // A symlink back up the tree must not be followed.
        std::os::unix::fs::symlink(dir.path(), dev.join("virtio0/subsystem")).unwrap();
        let found = modaliases_under(dir.path());
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn uevents_parse() {
        let msg = b"add@/devices/pci0000:00/0000:00:05.0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:05.0\0SUBSYSTEM=pci\0MODALIAS=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\0SEQNUM=1234\0";
        let event = parse_uevent(msg).unwrap();
        assert_eq!(event.action, "add");
        assert_eq!(event.devpath, "/devices/pci0000:00/0000:00:05.0");
        assert_eq!(event.subsystem.as_deref(), Some("pci"));
        assert!(event.modalias.unwrap().starts_with("pci:v00001AF4"));
        assert!(parse_uevent(b"libudev\0\xfe\xed").is_none());
    }

    #[test]
    fn levels_keep_dependencies_apart() {
        let dep = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
";
        let index = ModuleIndex::parse(Path::new("/lib/modules/x"), dep, "");
        let plan = index
            .plan(&["virtio_pci", "virtio_net", "virtio_blk"])
            .unwrap();
        let levels = levels(&index, &plan);
        let level = |n: &str| {
            levels
                .iter()
                .position(|l| l.iter().any(|m| m == n))
                .unwrap()
        };
        assert!(level("virtio_ring") < level("virtio"));
        assert!(level("virtio") < level("virtio_pci"));
        assert!(level("net_failover") < level("virtio_net"));
        assert_eq!(
            level("virtio_pci"),
            level("virtio_blk"),
            "independent modules share a level: {levels:?}"
        );
        assert_eq!(levels.iter().map(Vec::len).sum::<usize>(), plan.len());
    }
}
