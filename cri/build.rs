//! Compiles the vendored CRI v1 proto (`proto/api.proto`) into prost messages and tonic
//! server traits. protox parses it in Rust, so the build needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let fds = protox::compile(["api.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        // Methods berth-cri does not implement yet answer UNIMPLEMENTED by default.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
