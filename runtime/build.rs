//! Generates the ttrpc services and protobuf messages from `proto/` with ttrpc-codegen's
//! pure-Rust parser (no system `protoc`).

use std::{fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/berth/services/version/v1/version.proto",
    "proto/berth/services/introspection/v1/introspection.proto",
    "proto/berth/services/namespaces/v1/namespaces.proto",
    "proto/berth/services/images/v1/images.proto",
    "proto/berth/services/leases/v1/leases.proto",
    "proto/berth/services/content/v1/content.proto",
    "proto/berth/services/gc/v1/gc.proto",
    "proto/berth/services/snapshots/v1/snapshots.proto",
    "proto/berth/services/transfer/v1/transfer.proto",
    "proto/berth/services/system/v1/system.proto",
    "proto/berth/services/registry/v1/registry.proto",
    "proto/berth/services/config/v1/config.proto",
    "proto/berth/services/pull/v1/pull.proto",
    "proto/berth/services/containers/v1/containers.proto",
    "proto/berth/services/tasks/v1/tasks.proto",
    "proto/berth/shim/v1/shim.proto",
    "proto/berth/services/events/v1/events.proto",
];

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=BERTH_REVISION");
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    ttrpc_codegen::Codegen::new()
        .out_dir(&out)
        .inputs(PROTOS)
        .include("proto")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ttrpc_codegen::ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .expect("generating ttrpc code from proto/");

    // The generated files carry inner attributes (`#![allow(..)]`) and inner doc comments,
    // which `include!` cannot take; the crate sets the same allowances on the wrapping module.
    for entry in fs::read_dir(&out).expect("read OUT_DIR") {
        let path = entry.expect("OUT_DIR entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("read generated file");
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
                .collect();
            fs::write(&path, kept.join("\n")).expect("rewrite generated file");
        }
    }
}
