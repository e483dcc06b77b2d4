//! berthctl: the command-line client.
use std::ffi::OsString;
/// Runs berthctl with `args` (argv including argv[0]); returns the process exit code.
pub fn main_with_args(args: Vec<OsString>) -> i32 { let _ = args; todo!() }
