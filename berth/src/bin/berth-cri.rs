//! The host's `berth-cri`: the multi-call dispatch with berth-cri as the default. Its own
//! executable is what sandboxes run as `berth-pause` (bind-mounted under that name).

fn main() {
    std::process::exit(berth::dispatch(
        std::env::args_os().collect(),
        Some("berth-cri"),
    ));
}
