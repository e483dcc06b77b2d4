//! berth-image: turns an image definition, the static `berth` binary and a Debian kernel
//! package into the bootable artefacts described in `docs/architecture.md`:
//! `vmlinuz`, `initramfs.img` (stage-1 init, the few modules that mount the root, and the OS
//! tree as a read-only erofs image), `cmdline` and `manifest.json`.
//!
//! Everything is built to be reproducible: every timestamp comes from `SOURCE_DATE_EPOCH`,
//! every owner is root, every listing is sorted, and the erofs UUID is derived from the inputs.
//! The same inputs give byte-identical artefacts.
//!
//! The pipeline is split so each step can be tested on its own:
//! [`definition`] (what to build) → [`kernel`] (which kernel, from apt or local files) →
//! [`modules`] (module closures from `modules.dep`) → [`tree`] (the root and initramfs trees)
//! → [`erofs`] / [`cpio`] (the file-system images) → [`initramfs`] → [`manifest`], all driven by
//! [`builder::build`].

pub mod builder;
pub mod cpio;
pub mod deb;
pub mod definition;
pub mod demo;
pub mod disk;
pub mod epoch;
pub mod erofs;
pub mod error;
pub mod fsutil;
pub mod hosttools;
pub mod initramfs;
pub mod kernel;
pub mod manifest;
pub mod modules;
pub mod pxe;
pub mod rootfs;
pub mod tree;
pub mod uki;
pub mod zfs;

pub use builder::{build, BuildOptions, BuildReport, KernelInput};
pub use error::Error;
