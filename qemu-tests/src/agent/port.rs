//! Finding a virtio-serial port by name without udev.
//!
//! The kernel lists every port under `/sys/class/virtio-ports/<dev>/name` (for example
//! `vport1p2` → `org.berth.test`) and devtmpfs creates `/dev/<dev>`. Both may appear a while
//! after the agent starts (the virtio modules load during boot), so callers poll.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use std::{fs, io, thread};

/// Where the kernel lists virtio-serial ports.
pub const SYSFS_PORTS: &str = "/sys/class/virtio-ports";

/// Looks up the device node of the port called `name` under `sys_dir`, with nodes in
/// `dev_dir`. Returns `None` while the port or its node does not exist yet.
pub fn find_port_in(sys_dir: &Path, dev_dir: &Path, name: &str) -> io::Result<Option<PathBuf>> {
    let entries = match fs::read_dir(sys_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(port_name) = fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if port_name.trim_end() == name {
            let node = dev_dir.join(entry.file_name());
            return Ok(node.exists().then_some(node));
        }
    }
    Ok(None)
}

/// Waits until the port called `name` has a device node, checking every `interval`; says so on
/// stderr every 10 s while it waits. Never gives up: the agent has nothing else to do.
pub fn wait_for_port(name: &str, interval: Duration) -> PathBuf {
    let started = Instant::now();
    let mut next_note = Duration::from_secs(10);
    loop {
        match find_port_in(Path::new(SYSFS_PORTS), Path::new("/dev"), name) {
            Ok(Some(path)) => return path,
            Ok(None) => {}
            Err(e) => eprintln!("cannot list {SYSFS_PORTS}: {e}"),
        }
        if started.elapsed() >= next_note {
            eprintln!(
                "still waiting for virtio-serial port {name} after {:?}",
                started.elapsed()
            );
            next_note += Duration::from_secs(10);
        }
        thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_node_of_the_named_port_only_once_it_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let sys = tmp.path().join("sys");
        let dev = tmp.path().join("dev");
        for (dir, name) in [
            ("vport1p1", berth_layout::ports::API),
            ("vport1p2", berth_layout::ports::TEST),
        ] {
            fs::create_dir_all(sys.join(dir)).unwrap();
            fs::write(sys.join(dir).join("name"), format!("{name}\n")).unwrap();
        }
        fs::create_dir_all(&dev).unwrap();
        assert_eq!(
            find_port_in(&sys, &dev, berth_layout::ports::TEST).unwrap(),
            None
        );
        fs::write(dev.join("vport1p2"), b"").unwrap();
        assert_eq!(
            find_port_in(&sys, &dev, berth_layout::ports::TEST).unwrap(),
            Some(dev.join("vport1p2"))
        );
        assert_eq!(find_port_in(&sys, &dev, "org.other").unwrap(), None);
        assert_eq!(
            find_port_in(&tmp.path().join("none"), &dev, "x").unwrap(),
            None
        );
    }
}
