//! berthd for hosts; images run the same code through the multi-call `berth` binary.
fn main() {
    std::process::exit(berth_runtime::daemon::main_with_args(
        std::env::args_os().collect(),
    ));
}
