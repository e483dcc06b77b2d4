//! The A/B slots on the ESP: Boot Loader Specification Type #2 entries in `EFI/Linux/`
//! named `berth-<generation>-<slot>[+<left>[-<done>]].efi`.
//!
//! systemd-boot boots the entry that sorts first: entries whose try counter reached zero
//! (`+0-…`) last, the others by name, highest generation first. The counter suffix is the
//! boot counting of the Boot Loader Specification: systemd-boot renames `+1-0` to `+0-1` as
//! it starts the entry; blessing (init, once berthd is ready) renames it to the plain name.

use std::path::Path;

/// Entry file name prefix.
pub const PREFIX: &str = "berth-";

/// One slot's entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name in `EFI/Linux/`.
    pub file: String,
    /// Generation (higher boots first).
    pub generation: u64,
    /// `a` or `b`.
    pub slot: char,
    /// Boot counting: (tries left, tries done); `None` for a blessed entry.
    pub counter: Option<(u32, u32)>,
}

impl Entry {
    /// Parses an entry file name; `None` for anything else.
    pub fn parse(file: &str) -> Option<Self> {
        let stem = file.strip_suffix(".efi")?.strip_prefix(PREFIX)?;
        let (base, counter) = match stem.split_once('+') {
            Some((base, c)) => {
                let (left, done) = match c.split_once('-') {
                    Some((l, d)) => (l.parse().ok()?, d.parse().ok()?),
                    None => (c.parse().ok()?, 0),
                };
                (base, Some((left, done)))
            }
            None => (stem, None),
        };
        let (generation, slot) = base.split_once('-')?;
        let generation = generation.parse().ok()?;
        let mut chars = slot.chars();
        let slot = chars.next().filter(|c| *c == 'a' || *c == 'b')?;
        if chars.next().is_some() {
            return None;
        }
        Some(Self {
            file: file.to_string(),
            generation,
            slot,
            counter,
        })
    }

    /// The file name without a counter: what the entry is called once blessed.
    pub fn blessed_name(&self) -> String {
        format!("{PREFIX}{}-{}.efi", self.generation, self.slot)
    }

    /// The file name of a fresh entry to try once.
    pub fn trial_name(generation: u64, slot: char) -> String {
        format!("{PREFIX}{generation}-{slot}+1-0.efi")
    }

    /// Used up its tries without being blessed: systemd-boot will not pick it first.
    pub fn is_bad(&self) -> bool {
        matches!(self.counter, Some((0, _)))
    }

    /// Still on trial (has a counter).
    pub fn on_trial(&self) -> bool {
        self.counter.is_some()
    }

    /// Same slot and generation (names may differ by the counter).
    pub fn same_as(&self, other: &Entry) -> bool {
        self.generation == other.generation && self.slot == other.slot
    }
}

/// The entries in `dir`, in systemd-boot's boot order (the first is what it boots next).
pub fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| Entry::parse(&e.file_name().to_string_lossy()))
        .collect();
    sort(&mut entries);
    Ok(entries)
}

/// Sorts like systemd-boot: bad entries last, then newest generation first.
pub fn sort(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        a.is_bad()
            .cmp(&b.is_bad())
            .then(b.generation.cmp(&a.generation))
            .then(a.slot.cmp(&b.slot))
    });
}

/// The slot an upgrade writes: the one not booted now.
pub fn other(slot: char) -> char {
    if slot == 'a' {
        'b'
    } else {
        'a'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_and_without_counters() {
        let e = Entry::parse("berth-2-b+1-0.efi").unwrap();
        assert_eq!((e.generation, e.slot, e.counter), (2, 'b', Some((1, 0))));
        assert_eq!(e.blessed_name(), "berth-2-b.efi");
        assert!(!e.is_bad() && e.on_trial());
        assert!(Entry::parse("berth-2-b+0-1.efi").unwrap().is_bad());
        assert_eq!(Entry::parse("berth-1-a.efi").unwrap().counter, None);
        assert_eq!(
            Entry::parse("berth-3-a+2.efi").unwrap().counter,
            Some((2, 0))
        );
        for bad in [
            "berth-1-c.efi",
            "berth-x-a.efi",
            "other.efi",
            "berth-1-ab.efi",
            "berth-1-a.conf",
        ] {
            assert_eq!(Entry::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn sorts_like_systemd_boot() {
        let mut v: Vec<Entry> = ["berth-1-a.efi", "berth-2-b+0-1.efi", "berth-0-b.efi"]
            .iter()
            .map(|n| Entry::parse(n).unwrap())
            .collect();
        sort(&mut v);
        let names: Vec<&str> = v.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(
            names,
            ["berth-1-a.efi", "berth-0-b.efi", "berth-2-b+0-1.efi"]
        );
        let mut v: Vec<Entry> = ["berth-1-a.efi", "berth-2-b+1-0.efi"]
            .iter()
            .map(|n| Entry::parse(n).unwrap())
            .collect();
        sort(&mut v);
        assert_eq!(v[0].file, "berth-2-b+1-0.efi");
    }
}
