//! berthd for hosts; images run the same code through the multi-call `berth` binary.
//! Started as `berth-shim` (berthd re-executes itself for each container's shim), it is
//! the shim.
fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .first()
        .is_some_and(|a| berth_runtime::tasks::is_shim(a))
    {
        std::process::exit(berth_runtime::tasks::shim::main_with_args(args));
    }
    std::process::exit(berth_runtime::daemon::main_with_args(args));
}
