//! Exit records: the init's exit status, written durably (temporary file, fsync, rename,
//! fsync of the directory) in the task's directory before any waiter is told, so a berthd
//! that was down reads it after its restart, even when the shim is gone.

use std::fs::File;
use std::io::Write;
use std::path::Path;

/// The recorded end of a process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    pub pid: u32,
    pub exit_status: u32,
    /// Unix nanoseconds.
    pub exited_at: i64,
    /// OOM kills in the container's cgroup when its init exited (the init's record only;
    /// absent in records of older shims).
    #[serde(default)]
    pub oom_kills: u64,
}

/// Reads a recorded exit (`None` when there is none yet).
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(dir.join("exit")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes `rec` durably: temporary file, fsync, rename, fsync of the directory.
pub fn write_exit(dir: &Path, rec: &ExitRecord) -> std::io::Result<()> {
    let tmp = dir.join("exit.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(rec).expect("plain values serialize"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("exit"))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_round_trip() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(read_exit(d.path()), None);
        let rec = ExitRecord {
            pid: 42,
            exit_status: 137,
            exited_at: 1,
            oom_kills: 1,
        };
        write_exit(d.path(), &rec).unwrap();
        assert_eq!(read_exit(d.path()), Some(rec));
        assert!(!d.path().join("exit.tmp").exists());
    }
}
