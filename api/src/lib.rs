//! berth-api: the wire contract between berth's processes and their clients.
//!
//! Everything a client of berthd, of a container's shim or of init's control API needs, and
//! nothing of the engine behind them (no database, registry client, executor or tar code), so
//! `berthctl`, `berth-init` and the remote API link only this:
//!
//! - [`proto`]: the protobuf messages and ttrpc services generated from `api/proto/`, and
//!   [`methods::ALL`], every method of every service (generated from the same files);
//! - [`client`]: connecting to a ttrpc socket with a timeout, and the errors a client sees;
//! - [`errdefs`]: the error classes (containerd's errdefs) and the ONE mapping between them
//!   and ttrpc status codes, used by every service and every client;
//! - [`keys`]: the ttrpc metadata keys carrying the namespace and the lease, and the one rule
//!   reading them;
//! - [`stdio`]: the constants of container stdio over the API (windows, chunk sizes), whose
//!   client end is [`client::stdio`];
//! - [`time`], [`mount`] (the snapshot `Mount` type and mounting it), [`version`], and the
//!   default socket addresses in [`address`].

pub mod address;
pub mod client;
pub mod defaults;
pub mod errdefs;
pub mod keys;
pub mod methods;
pub mod mount;
pub mod proto;
pub mod seccomp;
pub mod stdio;
pub mod time;
pub mod version;

/// Exit code of a service (berthd, berth-cri, …) whose configuration is invalid (sysexits'
/// EX_CONFIG). Restarting cannot fix a file, so berth-init stops restarting a service that
/// exits with it before it is ready.
pub const EXIT_CONFIG: i32 = 78;

/// Largest data chunk in one streamed message (content reads and writes, imports, exports,
/// upgrades): ttrpc frames are capped at 4 MiB, and 1 MiB keeps memory per stream small.
pub const MAX_CHUNK: usize = 1 << 20;
