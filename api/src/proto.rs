//! Generated protobuf messages and ttrpc services of berthd, the shim and init's control API
//! (`api/proto/`).
//!
//! The generated modules refer to each other as `super::<name>`, so they live side by side here.
#![allow(
    missing_docs,
    unused_imports,
    unused_qualifications,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    unknown_lints,
    renamed_and_removed_lints,
    non_upper_case_globals,
    unused_mut,
    dead_code
)]

macro_rules! generated {
    ($($name:ident),* $(,)?) => {
        $(
            #[allow(missing_docs, clippy::all)]
            pub mod $name {
                include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
            }
        )*
    };
}

generated!(version, version_ttrpc, introspection, introspection_ttrpc);
generated!(namespaces, namespaces_ttrpc, images, images_ttrpc);
generated!(leases, leases_ttrpc, content, content_ttrpc, gc, gc_ttrpc);
generated!(snapshots, snapshots_ttrpc);
generated!(transfer, transfer_ttrpc);
generated!(system, system_ttrpc);
generated!(registry, registry_ttrpc, config, config_ttrpc);
generated!(pull, pull_ttrpc);
generated!(
    containers,
    containers_ttrpc,
    stdio,
    tasks,
    tasks_ttrpc,
    shim,
    shim_ttrpc
);
generated!(events, events_ttrpc);
