//! berth-test-agent: acts inside a berth test image on behalf of QEMU scenarios.
//!
//! Runs as a service under berth-init: `berth-test-agent [--port NAME]`. Everything lives in
//! [`berth_qemu_tests::agent`]; this only parses arguments.

use std::process::ExitCode;

use berth_qemu_tests::{agent, protocol};

/// The usage text, with the default port.
fn usage() -> String {
    format!(
        "usage: berth-test-agent [--port NAME]\n\
       berth-test-agent --ignore-sigterm | --sleep | --spawn-sleeper\n\
Serves the berth test agent protocol on the virtio-serial port NAME (default {}).\n\
--ignore-sigterm: ignore SIGTERM and sleep (a service that will not stop politely)\n\
--sleep: sleep in a new session until killed\n\
--spawn-sleeper: start a detached `--sleep` process, print its pid and exit",
        protocol::DEFAULT_PORT
    )
}

fn main() -> ExitCode {
    let mut port = protocol::DEFAULT_PORT.to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => match args.next() {
                Some(name) => port = name,
                None => return usage_error("--port needs a value"),
            },
            "--ignore-sigterm" => return hold(agent::hold::ignore_sigterm_forever()),
            "--sleep" => return hold(agent::hold::sleep_in_own_session()),
            "--spawn-sleeper" => {
                return match agent::hold::spawn_sleeper() {
                    Ok(pid) => {
                        println!("{pid}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("berth-test-agent: cannot start a sleeper: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return ExitCode::SUCCESS;
            }
            "-V" | "--version" => {
                println!("berth-test-agent {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => return usage_error(&format!("unexpected argument {other:?}")),
        }
    }
    match agent::serve(&port) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("berth-test-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hold(result: std::io::Result<std::convert::Infallible>) -> ExitCode {
    match result {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("berth-test-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("berth-test-agent: {message}\n{}", usage());
    ExitCode::from(2)
}
