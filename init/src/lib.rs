//! berth-init: berth's PID 1.
//!
//! Two stages in one binary. **Stage 1** runs in the initramfs: it mounts the read-only OS
//! image (`/berth/root.erofs`, erofs on a loop device) and switches root to it, because
//! `pivot_root(2)`, which every container start needs, does not work on the initramfs
//! rootfs. **Stage 2** runs on the real root: mounts, modules, `lo`, the virtio-serial API
//! bridge, then starts and supervises berthd (and extra `[[service]]`s) until a signal asks
//! for power-off or reboot. See `docs/architecture.md` for the contract with the image.
//!
//! PID 1 must never exit (the kernel panics): every failure path ends in
//! [`power::finish`], and a panic in stage 2 leads to an orderly power-off or reboot
//! (`[shutdown] on_fatal`).

pub mod atomic;
pub mod bridge;
pub mod cgroup;
pub mod cmdline;
pub mod coldplug;
pub mod config;
pub mod console;
pub mod control;
pub mod events;
pub mod growpart;
pub mod ipconfig;
pub mod layers;
pub mod log;
pub mod loopdev;
pub mod memory;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod node_config;
pub mod output;
pub mod power;
pub mod power_button;
pub mod reaper;
pub mod reload;
pub mod remote_api;
pub mod remote_config;
pub mod rlimit;
pub mod slots;
pub mod stage1;
pub mod stage2;
pub mod state_disk;
pub mod supervisor;
pub mod switch_root;
pub mod sysctl;
pub mod system;
pub mod time;
pub mod zfs;

use std::panic::AssertUnwindSafe;

use console::Console;
use power::FatalPolicy;

/// Entry point of `init`: stage 1 in the initramfs, else stage 2. Never returns.
///
/// Outside PID 1 it refuses to run (it would mount over the host) unless
/// `BERTH_INIT_ALLOW_NON_PID1=1` is set (development).
pub fn run() -> ! {
    // One malloc arena for all of init's threads: glibc gives each thread that allocates an
    // arena of its own, whose touched pages stay resident in PID 1 for no gain (init's threads
    // allocate little and rarely contend).
    // SAFETY: mallopt only sets a malloc tunable; no thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    install_panic_hook();
    let console = Console::default();
    if stage1::detect() {
        stage1::run(console);
    }
    let pid1 = nix::unistd::getpid().as_raw() == 1;
    if !pid1 && std::env::var_os("BERTH_INIT_ALLOW_NON_PID1").is_none_or(|v| v != "1") {
        console.error("init must run as PID 1");
        std::process::exit(1);
    }
    let mut fatal = FatalPolicy::default();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        stage2::run(stage2::default_config_path(), &mut fatal)
    }));
    // stage2::run never returns normally, so we only get here after a panic.
    let _ = result;
    fatal
        .console
        .error(&format!("fatal: init crashed; {}", fatal.action));
    // A second panic must not escape either.
    let _ = std::panic::catch_unwind(|| power::emergency_shutdown(fatal));
    power::finish(fatal.action, fatal.console)
}

/// Panics become one console line (the default hook prints several, and to stderr).
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        Console::default().error(&format!("panic in thread {name}{location}: {message}"));
    }));
}
