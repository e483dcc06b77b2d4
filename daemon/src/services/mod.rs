//! berthd's ttrpc services: each a thin adapter over the engine core (containerd's
//! `plugins/services/<svc>/service.go` over its local implementation). A handler reads the
//! request's namespace, converts wire messages to core types, calls the core, and maps a
//! core error to its status with [`berth_api::errdefs::status`]; logic lives in the core.

pub mod config;
pub mod introspection;
pub mod version;
