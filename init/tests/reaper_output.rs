//! `reaper::output` in a process where another thread reaps with `waitpid(-1)` (PID 1's main
//! loop): alone in its test binary, as that reaper takes every child of the process.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

/// A helper's output and status, whether its own wait or a concurrent `waitpid(-1)` (the
/// main loop's) reaps it.
#[test]
fn output_survives_a_concurrent_reaper() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                berth_init::reaper::reap();
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for i in 0..20 {
        let out = berth_init::reaper::output(Command::new("/bin/sh").args([
            "-c",
            &format!("echo out{i}; echo err{i} >&2; exit {}", i % 3),
        ]))
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("out{i}\n"));
        assert_eq!(String::from_utf8_lossy(&out.stderr), format!("err{i}\n"));
        assert_eq!(out.status.code(), Some(i % 3));
    }
    let out =
        berth_init::reaper::output(Command::new("/bin/sh").args(["-c", "kill -9 $$"])).unwrap();
    assert_eq!(out.status.signal(), Some(9));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    reaper.join().unwrap();
}
