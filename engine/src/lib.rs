//! berth's container engine: configuration, the ttrpc API server (`berthd`) and its client
//! (`berthctl`).
//!
//! Binaries are thin: `berthd` and `berthctl` (and the image's multi-call `berth`) call
//! [`daemon::main_with_args`] and [`ctl::main_with_args`].

pub mod archive;
pub mod config;
pub mod content;
pub mod failpoint;
pub mod images;
pub mod metadata;
pub mod plugins;
pub mod preload;
pub mod remotes;
pub mod snapshots;
pub mod storage_api;
pub mod tasks;
pub mod transfer;
pub mod unpack;
