//! The host↔image contract: facts that `berth-image` writes into an image and that
//! `berth-init` (and the engine, `berthctl` and the QEMU tests) read back, in one place so
//! the two sides cannot drift apart.
//!
//! | module | the fact |
//! | --- | --- |
//! | [`modules`] | `modules.dep`, `modules.builtin`, `modules.alias`: one parser, one bad-line rule, one dependency order |
//! | [`paths`] | where things live in the image: the root image in the initramfs, preloaded images, config files, the test agent |
//! | [`labels`] | GPT partition labels: `BERTH_STATE`, `BERTH_ESP` |
//! | [`slots`] | the A/B slots on the ESP: directory, entry file names with boot counting, UKI section names, `.osrel` |
//! | [`pe`] | reading a section out of a PE (UKI) file (feature `pe`) |
//! | [`ports`] | virtio-serial port names: `org.berth.api`, `org.berth.init`, `org.berth.test` |
//! | [`size`] | the one grammar for sizes (`64M`, `1Gi`, `512MiB`, `max`) |
//!
//! The crate is deliberately small (std, `thiserror`, and `object` behind the `pe` feature):
//! PID 1, the CLI and the image builder all link it.

pub mod labels;
pub mod modules;
pub mod paths;
#[cfg(feature = "pe")]
pub mod pe;
pub mod ports;
pub mod size;
pub mod slots;
