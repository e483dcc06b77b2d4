//! Generates the ttrpc services and protobuf messages from `proto/` with ttrpc-codegen's
//! pure-Rust parser (no system `protoc`), and the method table (`methods.rs`): every
//! `service`/`rpc` of every proto, so tests and the remote API's role table can enumerate the
//! whole API without a hand-written list that a new method could escape.

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
    "proto/berth/stdio/v1/stdio.proto",
    "proto/berth/services/tasks/v1/tasks.proto",
    "proto/berth/shim/v1/shim.proto",
    "proto/berth/services/events/v1/events.proto",
];

/// One `rpc` line of a proto: (full service name, method, client streams, server streams).
type Rpc = (String, String, bool, bool);

/// The services and methods of `text` (a proto file). The grammar berth's protos use is small:
/// `package a.b.c;`, `service Name {`, `rpc Method(stream? Req) returns (stream? Resp);`.
fn rpcs(path: &str, text: &str) -> Vec<Rpc> {
    let mut package = String::new();
    let mut service = None::<String>;
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = raw.split("//").next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("package ") {
            package = rest.trim_end_matches(';').trim().to_string();
        } else if let Some(rest) = line.strip_prefix("service ") {
            service = Some(rest.trim_end_matches('{').trim().to_string());
        } else if let Some(rest) = line.strip_prefix("rpc ") {
            let svc = service
                .as_ref()
                .unwrap_or_else(|| panic!("{path}: rpc outside a service: {line}"));
            let (name, rest) = rest
                .split_once('(')
                .unwrap_or_else(|| panic!("{path}: cannot read rpc line: {line}"));
            let (req, resp) = rest
                .split_once("returns")
                .unwrap_or_else(|| panic!("{path}: rpc without returns: {line}"));
            out.push((
                format!("{package}.{svc}"),
                name.trim().to_string(),
                req.trim_start().starts_with("stream "),
                resp.trim()
                    .trim_start_matches('(')
                    .trim_start()
                    .starts_with("stream "),
            ));
        } else if line.starts_with('}') {
            service = None;
        }
    }
    out
}

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

    let mut table = String::from(
        "/// Every method of every service, generated from `proto/` by build.rs.\n\
         pub const ALL: &[Method] = &[\n",
    );
    for p in PROTOS {
        let text = fs::read_to_string(p).expect("read proto");
        for (service, method, client_stream, server_stream) in rpcs(p, &text) {
            table.push_str(&format!(
                "    Method {{ service: {service:?}, method: {method:?}, client_stream: {client_stream}, server_stream: {server_stream} }},\n"
            ));
        }
    }
    table.push_str("];\n");
    fs::write(out.join("methods_table.rs.in"), table).expect("write methods table");

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
