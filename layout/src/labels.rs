//! GPT partition labels of a berth disk.
//!
//! `berth-image disk` writes them (and labels the file systems alike); `berth-init` finds the
//! partitions by them in `/sys/class/block/*/uevent` (`PARTNAME=`), because device names
//! change with the disk controller and the order disks are probed in. Both are defaults:
//! init's `[storage] label` and `[boot] esp_label` can name others.

/// The state partition: `/var` (images, containers, the node file). Formatted on first boot
/// when empty, grown to the end of the disk on first boot of a disk image.
pub const STATE: &str = "BERTH_STATE";

/// The EFI system partition holding systemd-boot and the two UKI slots.
pub const ESP: &str = "BERTH_ESP";
