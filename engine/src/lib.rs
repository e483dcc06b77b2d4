//! berth's container engine core: everything berthd does, as library calls that take and
//! return core types.
//!
//! The ttrpc services are not here: they are thin adapters in `berth-daemon`
//! (containerd's `service.go` over `local.go`), which also starts the server. The crate
//! boundary keeps the direction: no core module can reach a service, and no core error speaks
//! the transport — errors say which class they are in (`berth_api::errdefs::Classify`) and the
//! services map that to a status. The engine is a ttrpc *client* only, of each container's
//! shim ([`tasks`]).
//!
//! Core modules: [`store`] (content store + metadata database, opened together),
//! [`content`], [`metadata`], [`snapshots`], [`images`], [`archive`], [`unpack`], [`remotes`]
//! (registry hosts and pulls), [`transfer`] (import, export, image views), [`tasks`]
//! (containers, tasks, the shim), [`preload`], [`config`] and [`plugins`].

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
pub mod store;
pub mod tasks;
pub mod transfer;
pub mod unpack;
