//! The PCI network devices boot may wait for, and the ones no driver in the image can bind.
//!
//! The network stage waits (up to `[network] wait_secs`) for an interface per PCI network
//! controller (class `0x02xxxx`), because a driver module may still be loading on the modules
//! thread. A device no driver will ever bind would hold boot for the whole wait: Debian's
//! cloud kernel has no e1000 driver, and QEMU without `-nic`/`-nodefaults` adds an e1000, so a
//! plain `qemu-system-x86_64` boot waited 10 s for nothing (issue 21). A device can get an
//! interface when a driver is bound already (built-in drivers bind before init runs) or when a
//! module of the image claims its `modalias` in `modules.alias` (the image's table lists only
//! the modules it carries). The others are named once, by PCI vendor:device id, and not waited
//! for; a driver that shows up later (hot-plugged module, `device_add`) is still handled by
//! the link watcher.

use std::path::Path;

/// One PCI device of class "network controller".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciNic {
    /// Bus address, e.g. `0000:00:03.0`.
    pub address: String,
    /// `vendor:device` in hex without `0x`, e.g. `8086:100e`.
    pub id: String,
    /// The device's `modalias` (empty when unreadable).
    pub modalias: String,
    /// A driver is bound (`driver` link present).
    pub bound: bool,
}

/// PCI devices of class 0x02xxxx under `sysfs` (`bus/pci/devices/*`), sorted by address.
pub fn network_devices(sysfs: &Path) -> Vec<PciNic> {
    let Ok(dir) = std::fs::read_dir(sysfs.join("bus/pci/devices")) else {
        return Vec::new();
    };
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let mut nics: Vec<PciNic> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| read(p, "class").starts_with("0x02"))
        .map(|p| {
            let hex = |name: &str| read(&p, name).trim_start_matches("0x").to_string();
            PciNic {
                address: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                id: format!("{}:{}", hex("vendor"), hex("device")),
                modalias: read(&p, "modalias"),
                bound: p.join("driver").exists(),
            }
        })
        .collect();
    nics.sort_by(|a, b| a.address.cmp(&b.address));
    nics
}

/// Splits `nics` into those that can get an interface (bound, or claimed by a module of the
/// image according to `has_module`, given the modalias) and those that cannot.
pub fn split_drivable(
    nics: Vec<PciNic>,
    has_module: impl Fn(&str) -> bool,
) -> (Vec<PciNic>, Vec<PciNic>) {
    nics.into_iter()
        .partition(|n| n.bound || (!n.modalias.is_empty() && has_module(&n.modalias)))
}

/// The one console line for devices no driver can bind (`None` when there are none).
pub fn orphans_line(orphans: &[PciNic]) -> Option<String> {
    let (first, rest) = orphans.split_first()?;
    let list = std::iter::once(first)
        .chain(rest)
        .map(|n| format!("{} ({})", n.id, n.address))
        .collect::<Vec<_>>()
        .join(", ");
    let (devices, them) = if rest.is_empty() {
        ("device", "it")
    } else {
        ("devices", "them")
    };
    Some(format!(
        "network: no driver in this image for PCI network {devices} {list}; not waiting for {them}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(root: &Path, address: &str, class: &str, id: (&str, &str), bound: bool) {
        let d = root.join("bus/pci/devices").join(address);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("class"), format!("{class}\n")).unwrap();
        std::fs::write(d.join("vendor"), format!("0x{}\n", id.0)).unwrap();
        std::fs::write(d.join("device"), format!("0x{}\n", id.1)).unwrap();
        let alias = format!(
            "pci:v0000{}d0000{}sv00001AF4sd00000001bc{}sc00i00\n",
            id.0.to_uppercase(),
            id.1.to_uppercase(),
            &class[2..4]
        );
        std::fs::write(d.join("modalias"), alias).unwrap();
        if bound {
            std::fs::create_dir_all(d.join("driver")).unwrap();
        }
    }

    #[test]
    fn network_devices_are_found_by_class_with_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        device(
            dir.path(),
            "0000:00:04.0",
            "0x020000",
            ("8086", "100e"),
            false,
        );
        device(
            dir.path(),
            "0000:00:03.0",
            "0x010000",
            ("1af4", "1001"),
            true,
        );
        device(
            dir.path(),
            "0000:00:02.0",
            "0x020000",
            ("1af4", "1000"),
            true,
        );
        let nics = network_devices(dir.path());
        let ids: Vec<(&str, &str, bool)> = nics
            .iter()
            .map(|n| (n.address.as_str(), n.id.as_str(), n.bound))
            .collect();
        assert_eq!(
            ids,
            [
                ("0000:00:02.0", "1af4:1000", true),
                ("0000:00:04.0", "8086:100e", false)
            ]
        );
        assert!(nics[1].modalias.starts_with("pci:v00008086d0000100E"));
        assert!(network_devices(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn unbound_devices_without_a_module_are_orphans() {
        let dir = tempfile::tempdir().unwrap();
        // virtio-net, driver still loading (module in the image); e1000, no module.
        device(
            dir.path(),
            "0000:00:02.0",
            "0x020000",
            ("1af4", "1000"),
            false,
        );
        device(
            dir.path(),
            "0000:00:03.0",
            "0x020000",
            ("8086", "100e"),
            false,
        );
        // A built-in driver already bound: drivable whatever the table says.
        device(
            dir.path(),
            "0000:00:05.0",
            "0x020000",
            ("10ec", "8139"),
            true,
        );
        let aliases = crate::coldplug::AliasTable::parse(
            "alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci\n",
        );
        let (drivable, orphans) = split_drivable(network_devices(dir.path()), |m| {
            !aliases.lookup(m).is_empty()
        });
        let ids = |v: &[PciNic]| v.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&drivable), ["1af4:1000", "10ec:8139"]);
        assert_eq!(ids(&orphans), ["8086:100e"]);
        assert_eq!(
            orphans_line(&orphans).unwrap(),
            "network: no driver in this image for PCI network device 8086:100e (0000:00:03.0); \
             not waiting for it"
        );
    }

    #[test]
    fn the_orphans_line_names_every_device_once() {
        let nic = |address: &str, id: &str| PciNic {
            address: address.into(),
            id: id.into(),
            modalias: String::new(),
            bound: false,
        };
        assert_eq!(orphans_line(&[]), None);
        let line = orphans_line(&[
            nic("0000:00:03.0", "8086:100e"),
            nic("0000:00:04.0", "10ec:8139"),
        ])
        .unwrap();
        assert_eq!(
            line,
            "network: no driver in this image for PCI network devices 8086:100e (0000:00:03.0), \
             10ec:8139 (0000:00:04.0); not waiting for them"
        );
        // No modalias: nothing can claim it.
        let (drivable, orphans) = split_drivable(vec![nic("0000:00:03.0", "8086:100e")], |_| true);
        assert!(drivable.is_empty() && orphans.len() == 1);
    }
}
