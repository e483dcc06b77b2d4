//! berthd's ttrpc services: each a thin adapter over the engine core (containerd's
//! `plugins/services/<svc>/service.go` over its local implementation). A handler reads the
//! request's namespace ([`namespace`]), converts wire messages to core types, calls one core
//! function, and maps a core error to its status with [`berth_api::errdefs::status`]; logic
//! lives in the core (`berth-engine`).
//!
//! One namespace rule for every service: [`namespace`] reads the request's metadata with
//! [`berth_api::keys::namespace`] (`berth-namespace`, else containerd's
//! `containerd-namespace-ttrpc`, else `default`) and checks the name is an identifier. Before
//! this rule had one home, the Snapshots service read only `berth-namespace`, so a
//! containerd-style client landed in different namespaces depending on the service
//! (berth/tests/namespace_rule.rs holds every service to it).
//!
//! Not namespaced, on purpose: Version, Introspection, Config, Registry (the node's registry
//! settings), GC (collects every namespace), Namespaces (names the namespace in the request),
//! and Content's ingest calls (Status, ListStatuses, Abort: ingests are keyed by their ref
//! across namespaces; the write that commits one records it in a namespace).

pub mod attach;
pub mod config;
pub mod containers;
pub mod content;
pub mod events;
pub mod gc;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod pull;
pub mod registry;
pub mod snapshots;
pub mod tasks;
pub mod transfer;
pub mod version;

use berth_api::errdefs::{self, Kind};
use ttrpc::r#async::TtrpcContext;

/// The request's namespace (see the module docs), validated: INVALID_ARGUMENT naming it
/// when it is not an identifier.
pub fn namespace(ctx: &TtrpcContext) -> ttrpc::Result<String> {
    let ns = berth_api::keys::namespace(&ctx.metadata);
    berth_engine::metadata::validate::identifier("namespace", &ns)
        .map_err(|e| errdefs::status(&e))?;
    Ok(ns)
}

/// The request's lease, if any.
pub fn lease(ctx: &TtrpcContext) -> Option<String> {
    berth_api::keys::lease(&ctx.metadata)
}

/// Runs blocking database or filesystem work from an async handler without stalling the
/// runtime's other tasks.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Runs `f` on the blocking pool; a task that panicked is INTERNAL with `what` (the same
/// message each service answered before: `<what>: <join error>`, or the bare join error when
/// `what` is empty).
pub(crate) async fn spawn_blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> ttrpc::Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        let msg = if what.is_empty() {
            e.to_string()
        } else {
            format!("{what}: {e}")
        };
        errdefs::to_ttrpc(Kind::Internal, msg)
    })
}
