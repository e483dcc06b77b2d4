//! berthctl for hosts; images run the same code through the multi-call `berth` binary.
fn main() {
    std::process::exit(berth_runtime::ctl::main_with_args(
        std::env::args_os().collect(),
    ));
}
