//! The host's `berthctl`: the multi-call dispatch with berthctl as the default.

fn main() {
    std::process::exit(berth::dispatch(
        std::env::args_os().collect(),
        Some("berthctl"),
    ));
}
