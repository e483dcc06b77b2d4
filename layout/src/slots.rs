//! The A/B slots on the ESP and what a slot's UKI carries.
//!
//! `berth-image disk` lays out the ESP: systemd-boot as [`BOOT_MANAGER`], `loader.conf`, and
//! the same UKI in both slots as Boot Loader Specification Type #2 entries in [`SLOT_DIR`],
//! named `berth-<generation>-<slot>[+<left>[-<done>]].efi` ([`Entry`]). `berth-init` reads
//! the names back to know which slot booted, blesses a trial entry (drops its counter) once
//! berthd is ready, and writes an upgrade into the other slot under a trial name.
//!
//! systemd-boot boots the entry that sorts first: entries whose try counter reached zero
//! (`+0-…`) last, the others by name, highest generation first ([`sort`]). The counter
//! suffix is the boot counting of the Boot Loader Specification: systemd-boot renames `+1-0`
//! to `+0-1` as it starts the entry.

/// Directory of the slot entries on the ESP.
pub const SLOT_DIR: &str = "EFI/Linux";

/// Where the firmware finds the boot manager on the ESP (the removable-media path: no EFI
/// boot variables needed).
pub const BOOT_MANAGER: &str = "EFI/BOOT/BOOTX64.EFI";

/// Entry file name prefix.
pub const PREFIX: &str = "berth-";

/// The entries of a fresh disk: the same UKI in slot a (generation 1, boots first) and slot b
/// (generation 0, the fallback from the first boot on).
pub const FIRST_ENTRIES: [(u64, char); 2] = [(1, 'a'), (0, 'b')];

/// The UKI sections the builder adds to the EFI stub, in the order they are laid out.
pub const UKI_SECTIONS: [&str; 4] = [OSREL, CMDLINE, INITRD, LINUX];
/// os-release of the image: systemd-boot's title and version, init's slot version.
pub const OSREL: &str = ".osrel";
/// The kernel command line.
pub const CMDLINE: &str = ".cmdline";
/// The initramfs.
pub const INITRD: &str = ".initrd";
/// The kernel.
pub const LINUX: &str = ".linux";
/// What makes a file a UKI to init (an upgrade must have both).
pub const REQUIRED_SECTIONS: [&str; 2] = [LINUX, OSREL];

/// One slot's entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name in [`SLOT_DIR`].
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

    /// The file name of a blessed entry (no counter).
    pub fn name(generation: u64, slot: char) -> String {
        format!("{PREFIX}{generation}-{slot}.efi")
    }

    /// The file name without a counter: what the entry is called once blessed.
    pub fn blessed_name(&self) -> String {
        Self::name(self.generation, self.slot)
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

/// The `.osrel` of a berth UKI: systemd-boot shows `PRETTY_NAME` and sorts by
/// `VERSION_ID`; init reports `IMAGE_VERSION` per slot ([`osrel_version`]).
pub fn osrel(version: &str) -> String {
    format!(
        "NAME=berth\nID=berth\nPRETTY_NAME=\"berth {version}\"\nVERSION_ID={version}\nIMAGE_ID=berth\nIMAGE_VERSION={version}\n"
    )
}

/// `IMAGE_VERSION` (else `VERSION_ID`) of an os-release text, unquoted.
pub fn osrel_version(text: &str) -> Option<String> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    value("IMAGE_VERSION").or_else(|| value("VERSION_ID"))
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
        assert_eq!(Entry::trial_name(2, 'b'), "berth-2-b+1-0.efi");
    }

    #[test]
    fn first_entries_parse_blessed_and_slot_a_boots_first() {
        let mut entries: Vec<Entry> = FIRST_ENTRIES
            .iter()
            .map(|&(g, s)| Entry::parse(&Entry::name(g, s)).unwrap())
            .collect();
        assert_eq!(entries[0].file, "berth-1-a.efi");
        assert_eq!(entries[1].file, "berth-0-b.efi");
        assert!(entries.iter().all(|e| !e.on_trial()));
        sort(&mut entries);
        assert_eq!(entries[0].slot, 'a');
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
        assert_eq!(other('a'), 'b');
        assert_eq!(other('b'), 'a');
    }

    #[test]
    fn osrel_round_trips_the_version() {
        let text = osrel("1.2.3");
        assert!(text.contains("IMAGE_VERSION=1.2.3\n"));
        assert!(text.contains("VERSION_ID=1.2.3\n"));
        assert_eq!(osrel_version(&text).as_deref(), Some("1.2.3"));
        assert_eq!(
            osrel_version("ID=x\nVERSION_ID=\"7\"\n").as_deref(),
            Some("7")
        );
        assert_eq!(osrel_version("ID=x\n"), None);
    }
}
