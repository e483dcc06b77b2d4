//! Init's own memory after boot: give back what only boot needed.
//!
//! Boot runs code and allocates memory that idle init never touches again: parsing the
//! configuration layers, coldplug over `modules.alias`, formatting and checking the state disk,
//! bringing up the network. Two things keep that memory counted against PID 1 for the node's
//! whole life:
//!
//! - the kernel maps file pages around every page fault ("fault-around", 64 KiB windows), so
//!   by the end of boot nearly all of init's text and read-only data is mapped, although the
//!   idle loops (reaping, supervision, log receivers, the control API, DHCP renewals) use a
//!   small part of it;
//! - glibc keeps freed heap memory for reuse instead of returning it to the kernel.
//!
//! [`trim_after_boot`] runs once, a few seconds after `berth ready`: `malloc_trim(0)` returns
//! free heap pages, and `madvise(MADV_PAGEOUT)` asks the kernel to reclaim the pages of init's
//! own *read-only, file-backed* mappings (its text and read-only data). Those are clean copies
//! of the image file: nothing is lost, and any code path that runs again faults its pages back
//! in from the read-only root. Writable mappings (`.data`, `.bss`, the heap, stacks, and the
//! RELRO segment, which relocation wrote to) are never touched. What remains mapped afterwards
//! is init's idle working set, which is what `berthctl system status` reports.
//!
//! There is no crate for this: it is one libc call and one madvise per mapping, chosen from
//! `/proc/self/maps`.

use std::fs;

/// What one trim did, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Read-only mappings of init's executable that were advised out.
    pub mappings: usize,
    /// Their total size in bytes (address space, not necessarily resident before).
    pub bytes: u64,
    /// Whether `malloc_trim` returned memory to the kernel.
    pub heap_released: bool,
}

/// One line of `/proc/self/maps` that [`trim_after_boot`] may advise out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
}

/// The read-only (no `w`), private, file-backed mappings of `exe` in a `/proc/self/maps`
/// listing. Anonymous, writable and other files' mappings are left out: only clean pages of
/// our own image file can be dropped without losing anything.
fn readonly_mappings_of(maps: &str, exe: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let _offset = fields.next()?;
            let _dev = fields.next()?;
            let inode = fields.next()?;
            let path = fields.collect::<Vec<_>>().join(" ");
            if inode == "0" || path != exe || perms.contains('w') || !perms.ends_with('p') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some(Mapping {
                start: usize::from_str_radix(start, 16).ok()?,
                end: usize::from_str_radix(end, 16).ok()?,
            })
        })
        .filter(|m| m.end > m.start)
        .collect()
}

/// Returns boot-only memory to the kernel (see the module docs). Best effort: a kernel
/// without `MADV_PAGEOUT` (before 5.4) or an unreadable `/proc` just leaves more mapped.
pub fn trim_after_boot() -> Trimmed {
    let mut trimmed = Trimmed {
        // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it is safe to
        // call from any thread at any time.
        heap_released: unsafe { libc::malloc_trim(0) } == 1,
        ..Trimmed::default()
    };
    let (Ok(maps), Ok(exe)) = (
        fs::read_to_string("/proc/self/maps"),
        fs::read_link("/proc/self/exe"),
    ) else {
        return trimmed;
    };
    for m in readonly_mappings_of(&maps, &exe.to_string_lossy()) {
        let len = m.end - m.start;
        // SAFETY: the range is exactly one of our own read-only, private, file-backed
        // mappings as listed by the kernel a moment ago (they are never unmapped while init
        // runs). MADV_PAGEOUT only reclaims pages: clean file pages are dropped and fault back
        // in from the file on the next access, so no memory contents change.
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
        if rc == 0 {
            trimmed.mappings += 1;
            trimmed.bytes += len as u64;
        }
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55556eeae000-55556ef39000 rw-p 00000000 00:00 0                          [heap]
7f3d04b80000-7f3d04d12000 r--p 00000000 07:00 25                         /usr/sbin/init
7f3d04d12000-7f3d050b8000 r-xp 00192000 07:00 25                         /usr/sbin/init
7f3d050b8000-7f3d050de000 r--p 00538000 07:00 25                         /usr/sbin/init
7f3d050de000-7f3d050e2000 rw-p 0055e000 07:00 25                         /usr/sbin/init
7f3d050e2000-7f3d050e9000 rw-p 00000000 00:00 0
7f3d06000000-7f3d06001000 r--p 00000000 07:00 31                         /usr/lib/other
7f3d06001000-7f3d06002000 r--s 00000000 07:00 25                         /usr/sbin/init
7ffe6a394000-7ffe6a396000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn only_readonly_private_mappings_of_our_own_file() {
        let got = readonly_mappings_of(MAPS, "/usr/sbin/init");
        assert_eq!(
            got,
            vec![
                Mapping {
                    start: 0x7f3d04b80000,
                    end: 0x7f3d04d12000
                },
                Mapping {
                    start: 0x7f3d04d12000,
                    end: 0x7f3d050b8000
                },
                // The RELRO segment is read-only now but was written by relocation: it is
                // private dirty memory, and MADV_PAGEOUT leaves anonymous pages alone (no
                // swap), so listing it is harmless.
                Mapping {
                    start: 0x7f3d050b8000,
                    end: 0x7f3d050de000
                },
            ]
        );
    }

    #[test]
    fn paths_with_spaces_and_deleted_files_match_exactly() {
        let maps = "1000-2000 r-xp 00000000 07:00 9 /opt/my init (deleted)\n";
        assert_eq!(readonly_mappings_of(maps, "/opt/my init").len(), 0);
        assert_eq!(
            readonly_mappings_of(maps, "/opt/my init (deleted)").len(),
            1
        );
    }

    /// Resident KiB of this process's read-only mappings of its own executable.
    fn exe_readonly_rss_kib() -> u64 {
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy();
        let smaps = fs::read_to_string("/proc/self/smaps").unwrap();
        let mut ours = false;
        let mut total = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                ours = !readonly_mappings_of(line, &exe).is_empty();
            } else if ours && line.starts_with("Rss:") {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        total
    }

    #[test]
    fn trimming_ourselves_drops_text_and_keeps_working() {
        // The test binary advises out its own text and read-only data, then keeps running
        // code and reading constants from them.
        let before = exe_readonly_rss_kib();
        let t = trim_after_boot();
        let after = exe_readonly_rss_kib();
        println!("read-only exe mappings resident: {before} KiB before, {after} KiB after ({t:?})");
        assert!(t.mappings >= 2, "text and rodata not advised out: {t:?}");
        assert!(
            after < before,
            "nothing was reclaimed: {before} KiB -> {after} KiB"
        );
        let words: Vec<String> = (0..1000).map(|i| format!("{i}")).collect();
        assert_eq!(words[999], "999");
    }
}
