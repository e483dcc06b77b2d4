//! `berth`: the image's multi-call binary; see the crate docs for the dispatch rules.

fn main() {
    std::process::exit(berth::dispatch(std::env::args_os().collect(), None));
}
