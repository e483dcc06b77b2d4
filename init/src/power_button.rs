//! The ACPI power button (QEMU's `system_powerdown`, a short press on metal): watched
//! through evdev, since there is no acpid. A press asks init for an orderly power-off by
//! raising SIGUSR2 at itself, so it takes exactly the path a `SIGUSR2` from outside takes.
//!
//! Needs the `button` (ACPI) and `evdev` modules, loaded here if the image has them.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::console::Console;
use crate::modules::ModuleIndex;

/// Modules providing the power button's input device.
pub const MODULES: &[&str] = &["button", "evdev"];
/// Size of `struct input_event` on 64-bit Linux.
pub const INPUT_EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;

/// Whether one `struct input_event` (native endian) is a power-key press.
pub fn is_power_press(event: &[u8; INPUT_EVENT_SIZE]) -> bool {
    let kind = u16::from_ne_bytes([event[16], event[17]]);
    let code = u16::from_ne_bytes([event[18], event[19]]);
    let value = i32::from_ne_bytes([event[20], event[21], event[22], event[23]]);
    kind == EV_KEY && code == KEY_POWER && value == 1
}

/// Event devices under `class_dir` (`/sys/class/input`) whose name says "Power Button".
pub fn find_buttons(class_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(class_dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("device/name"))
                .is_ok_and(|n| n.trim() == "Power Button")
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Loads the modules and starts the watcher thread. Silent (debug level) when the image
/// has no power button support.
pub fn spawn(index: Option<&ModuleIndex>, console: Console) {
    if let Some(index) = index {
        for (name, result) in index.load(MODULES) {
            if let Err(err) = result {
                console.debug(&format!("power button: module {name}: {err}"));
            }
        }
    }
    let spawned = std::thread::Builder::new()
        .name("power-button".into())
        .spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(2);
            let devices = loop {
                let found = find_buttons(Path::new("/sys/class/input"));
                if !found.is_empty() || Instant::now() >= deadline {
                    break found;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            let files: Vec<std::fs::File> = devices
                .iter()
                .filter_map(|d| std::fs::File::open(PathBuf::from("/dev/input").join(d)).ok())
                .collect();
            if files.is_empty() {
                console.debug("power button: no input device; system_powerdown will not work");
                return;
            }
            console.debug(&format!("power button: watching {}", devices.join(" ")));
            watch(files);
        });
    if let Err(err) = spawned {
        console.warn(&format!("cannot start the power button thread: {err}"));
    }
}

fn watch(mut files: Vec<std::fs::File>) {
    let mut event = [0u8; INPUT_EVENT_SIZE];
    loop {
        let ready: Vec<usize> = {
            let mut fds: Vec<PollFd> = files
                .iter()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
                .collect();
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            fds.iter()
                .enumerate()
                .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(i, _)| i)
                .collect()
        };
        for i in ready {
            // evdev hands out whole events per read.
            match files[i].read_exact(&mut event) {
                Ok(()) if is_power_press(&event) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::getpid(),
                        nix::sys::signal::Signal::SIGUSR2,
                    );
                }
                Ok(()) => {}
                Err(_) => {
                    files.remove(i);
                    if files.is_empty() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> [u8; INPUT_EVENT_SIZE] {
        let mut e = [0u8; INPUT_EVENT_SIZE];
        e[16..18].copy_from_slice(&kind.to_ne_bytes());
        e[18..20].copy_from_slice(&code.to_ne_bytes());
        e[20..24].copy_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn only_a_power_key_press_counts() {
        assert!(is_power_press(&event(EV_KEY, KEY_POWER, 1)));
        assert!(!is_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!is_power_press(&event(0, 0, 0)));
        assert!(!is_power_press(&event(EV_KEY, 115, 1)));
    }

    #[test]
    fn finds_power_buttons_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (dev, name) in [
            ("event0", "Power Button"),
            ("event1", "AT Translated Set 2 keyboard"),
            ("input0", "Power Button"),
        ] {
            std::fs::create_dir_all(dir.path().join(dev).join("device")).unwrap();
            std::fs::write(
                dir.path().join(dev).join("device/name"),
                format!("{name}\n"),
            )
            .unwrap();
        }
        assert_eq!(find_buttons(dir.path()), ["event0"]);
    }
}
