//! Where things live in a berth image, as absolute paths in the running system.
//!
//! The builder places files in trees rooted at the image (or initramfs) root; it takes the
//! same constants through [`in_tree`], which drops the leading `/`.

/// The OS tree as an erofs image, in the initramfs: stage 1 mounts it read-only on a loop
/// device and switches root to it.
pub const ROOT_IMAGE: &str = "/berth/root.erofs";

/// Kernel modules: `<MODULES_DIR>/<release>/` with `modules.dep`, `modules.alias`,
/// `modules.builtin` (in the root image `/lib` is `/usr/lib`; the builder writes
/// [`ROOT_MODULES_DIR`] there).
pub const MODULES_DIR: &str = "/lib/modules";

/// Where the builder puts the kernel modules of the root image (`/lib` → `/usr/lib`).
pub const ROOT_MODULES_DIR: &str = "/usr/lib/modules";

/// Container image archives baked into the image; berthd imports them at start (its
/// `[plugins."berth.preload.v1"] dirs` default).
pub const PRELOAD_DIR: &str = "/usr/share/berth/images";

/// The demo container image every image preloads (Debian's busybox, built by
/// `berth-image`): its archive in [`PRELOAD_DIR`] …
pub const DEMO_ARCHIVE: &str = "/usr/share/berth/images/00-demo-busybox.tar";

/// … and the name berthd lists it under after the import.
pub const DEMO_IMAGE: &str = "localhost/berth/busybox:latest";

/// The image's configuration files (`init.toml`, `berthd.toml`, `certs.d/`).
pub const CONFIG_DIR: &str = "/etc/berth";

/// init's configuration file in the image.
pub const INIT_CONFIG: &str = "/etc/berth/init.toml";

/// The node file on the state disk: per-node configuration layered over [`INIT_CONFIG`]
/// (a UKI's command line is fixed, so per-node settings live here).
pub const NODE_FILE: &str = "/var/etc/berth/node.toml";

/// The image's build time (`SOURCE_DATE_EPOCH`, seconds, one line): berth-init never sets
/// the clock earlier than this (the clock floor of a node without RTC or time server).
pub const BUILD_EPOCH: &str = "/usr/lib/berth/build-epoch";

/// The test agent of test images.
pub const TEST_AGENT: &str = "/usr/libexec/berth/berth-test-agent";

/// The snapshotter conformance binary of ZFS test images.
pub const SNAPSHOTTER_CONFORMANCE: &str = "/usr/libexec/berth/berth-snapshotter-conformance";

/// `path` relative to the image root, as the builder's trees want it
/// (`/berth/root.erofs` → `berth/root.erofs`).
pub fn in_tree(path: &str) -> &str {
    path.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_paths_are_relative() {
        assert_eq!(in_tree(ROOT_IMAGE), "berth/root.erofs");
        assert_eq!(in_tree(PRELOAD_DIR), "usr/share/berth/images");
        assert_eq!(in_tree("relative"), "relative");
        assert_eq!(
            std::path::Path::new(DEMO_ARCHIVE).parent(),
            Some(std::path::Path::new(PRELOAD_DIR))
        );
    }
}
