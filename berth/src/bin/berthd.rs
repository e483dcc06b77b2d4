//! The host's `berthd`: the multi-call dispatch with berthd as the default, so that berthd
//! re-executed as `berth-shim` is the shim, as in an image.

fn main() {
    std::process::exit(berth::dispatch(
        std::env::args_os().collect(),
        Some("berthd"),
    ));
}
