//! The A/B slots: the ESP, the two UKI slots and their boot counting, from init's side.
//! (Not to be confused with the engine's *boot containers*, `[plugins."berth.boot.v1"]`.)
//!
//! A disk made by `berth-image disk` boots OVMF/firmware → systemd-boot → the UKI of the
//! first slot in its order (entry names and order: [`berth_layout::slots`]). On such a boot
//! init, once modules are loaded:
//! reports the firmware, loader and stub (systemd's EFI variables), mounts the ESP (GPT
//! label `BERTH_ESP`, vfat) on [`ESP_MOUNT`], and works out the last boot outcome (a slot
//! whose tries are used up was not blessed: the boot rolled back from it). If the booted
//! entry is on trial (it carries a `+left-done` counter), init blesses it — renames it to
//! drop the counter — once berthd is ready, and reboots if berthd is not ready within
//! `[boot] trial_ready_timeout_secs`, so systemd-boot falls back to the other slot.
//! Upgrades write the other slot through the control API ([`upgrade`]).
//!
//! Init owns the ESP: nothing else in the image mounts it. See `docs/upgrades.md`. The
//! `[boot]` table of init.toml configures this stage ([`BootConfig`]); console lines keep
//! their `boot:` prefix.

pub mod upgrade;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use berth_layout::slots::{self as layout, Entry};

use crate::console::Console;
use crate::log::Logger;

/// Where init mounts the ESP.
pub const ESP_MOUNT: &str = "/run/berth/esp";
/// The slots' directory under [`ESP_MOUNT`].
pub const SLOT_DIR: &str = layout::SLOT_DIR;
/// systemd's vendor GUID for its loader/stub EFI variables.
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// Modules this stage needs: efivarfs for the loader's variables, vfat and its code pages
/// for the ESP (built-in ones are skipped).
const MODULES: [&str; 4] = ["efivarfs", "vfat", "nls_cp437", "nls_iso8859_1"];

/// `[boot]` in init.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootConfig {
    /// GPT label of the EFI system partition holding the slots.
    pub esp_label: String,
    /// On a trial boot (a freshly upgraded slot), how long berthd has to become ready
    /// before init reboots so the boot manager falls back to the previous slot.
    pub trial_ready_timeout_secs: u64,
}

impl Default for BootConfig {
    fn default() -> Self {
        Self {
            esp_label: berth_layout::labels::ESP.into(),
            trial_ready_timeout_secs: 120,
        }
    }
}

/// One slot as `system status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// The entry.
    pub entry: Entry,
    /// IMAGE_VERSION from its `.osrel` ("" if unreadable).
    pub version: String,
    /// It is the one running now.
    pub booted: bool,
}

/// What init knows about this boot; shared with the control API.
#[derive(Debug, Clone, Default)]
pub struct BootState {
    /// Booted through UEFI with the ESP mounted.
    pub esp: Option<PathBuf>,
    /// `LoaderInfo` (systemd-boot's name and version), `StubInfo`, `LoaderFirmwareInfo`.
    pub loader: String,
    /// The stub's identification.
    pub stub: String,
    /// The firmware's identification.
    pub firmware: String,
    /// `LoaderEntrySelected`: the entry booted, as systemd-boot named it.
    pub selected: String,
    /// The booted entry, parsed.
    pub booted: Option<Entry>,
    /// Outcome of the last boot attempt, in words.
    pub outcome: String,
}

/// The shared handle: this boot's state, the slots, an upgrade in progress.
#[derive(Debug, Default)]
pub struct Slots {
    state: Mutex<BootState>,
    upload: Mutex<Option<upgrade::Upload>>,
}

impl Slots {
    fn slot_dir(&self) -> Result<PathBuf, upgrade::UpgradeError> {
        let esp = self.state().esp.ok_or(upgrade::UpgradeError::NoEsp)?;
        Ok(esp.join(SLOT_DIR))
    }

    /// Starts an upload into the inactive slot (replacing one in progress).
    pub fn upgrade_begin(&self, size: u64, sha256: &str) -> Result<(), upgrade::UpgradeError> {
        let upload = upgrade::Upload::begin(&self.slot_dir()?, size, sha256)?;
        if let Ok(mut u) = self.upload.lock() {
            *u = Some(upload);
        }
        Ok(())
    }

    /// Appends a chunk to the upload.
    pub fn upgrade_write(&self, offset: u64, data: &[u8]) -> Result<(), upgrade::UpgradeError> {
        let mut guard = self
            .upload
            .lock()
            .map_err(|_| upgrade::UpgradeError::NoUpload)?;
        guard
            .as_mut()
            .ok_or(upgrade::UpgradeError::NoUpload)?
            .write(offset, data)
    }

    /// Verifies and installs the upload as the trial entry of the inactive slot.
    pub fn upgrade_commit(&self) -> Result<upgrade::Installed, upgrade::UpgradeError> {
        let upload = self
            .upload
            .lock()
            .ok()
            .and_then(|mut u| u.take())
            .ok_or(upgrade::UpgradeError::NoUpload)?;
        let booted = self.state().booted;
        upload.commit(booted.as_ref())
    }

    /// A copy of the state.
    pub fn state(&self) -> BootState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut BootState)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s);
        }
    }

    /// Every slot entry on the ESP, in boot order, with versions.
    pub fn list(&self) -> Vec<SlotInfo> {
        let state = self.state();
        let Some(esp) = &state.esp else {
            return Vec::new();
        };
        let dir = esp.join(SLOT_DIR);
        list(&dir)
            .unwrap_or_default()
            .into_iter()
            .map(|entry| SlotInfo {
                version: upgrade::osrel_version(&dir.join(&entry.file)).unwrap_or_default(),
                booted: state.booted.as_ref().is_some_and(|b| b.same_as(&entry)),
                entry,
            })
            .collect()
    }
}

/// The entries in `dir`, in systemd-boot's boot order (the first is what it boots next).
pub fn list(dir: &Path) -> std::io::Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| Entry::parse(&e.file_name().to_string_lossy()))
        .collect();
    layout::sort(&mut entries);
    Ok(entries)
}

/// Reads a systemd loader/stub EFI variable (UTF-16LE after 4 bytes of attributes).
pub fn efi_var(name: &str) -> Option<String> {
    let path = format!("/sys/firmware/efi/efivars/{name}-{LOADER_GUID}");
    let data = std::fs::read(path).ok()?;
    Some(decode_efi_string(data.get(4..)?))
}

/// A NUL-terminated UTF-16LE string.
pub fn decode_efi_string(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// What the slots say about the last boot attempt.
pub fn outcome(entries: &[SlotInfo], booted: Option<&Entry>) -> String {
    let Some(booted) = booted else {
        return "booted entry unknown (not started by systemd-boot?)".into();
    };
    let failed: Vec<&SlotInfo> = entries
        .iter()
        .filter(|s| s.entry.is_bad() && !s.entry.same_as(booted))
        .collect();
    if let Some(f) = failed.first() {
        return format!(
            "rolled back: slot {} (generation {}, version {}) used its tries without becoming ready; booted slot {} (generation {})",
            f.entry.slot, f.entry.generation, f.version, booted.slot, booted.generation
        );
    }
    if booted.on_trial() {
        return format!(
            "trial boot of slot {} (generation {}): waiting for berthd to become ready",
            booted.slot, booted.generation
        );
    }
    format!(
        "booted slot {} (generation {})",
        booted.slot, booted.generation
    )
}

fn mount_esp(config: &BootConfig) -> Result<PathBuf, String> {
    let found = crate::state_disk::find_labelled(Path::new("/sys/class/block"), &config.esp_label);
    let part = match found.as_slice() {
        [p] => p.clone(),
        [] => return Err(format!("no partition labelled {}", config.esp_label)),
        many => {
            return Err(format!(
                "partitions {} all carry the label {}",
                many.iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                config.esp_label
            ))
        }
    };
    let target = PathBuf::from(ESP_MOUNT);
    std::fs::create_dir_all(&target).map_err(|e| format!("create {ESP_MOUNT}: {e}"))?;
    nix::mount::mount(
        Some(&part.device),
        &target,
        Some("vfat"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("umask=0077,codepage=437,iocharset=iso8859-1,shortname=mixed"),
    )
    .map_err(|errno| {
        format!(
            "mount {} (vfat) on {ESP_MOUNT}: {errno}",
            part.device.display()
        )
    })?;
    Ok(target)
}

/// Starts the boot stage on its own thread: reports how the machine booted, mounts the ESP,
/// blesses a trial boot once berthd is ready or reboots if it never gets there. Returns the
/// shared state for the control API (empty when not booted through UEFI).
pub fn start(config: &BootConfig, logger: &'static Logger, console: Console) -> Arc<Slots> {
    let boot = Arc::new(Slots::default());
    if !Path::new("/sys/firmware/efi").exists() {
        console.debug("boot: not a UEFI boot; no slots");
        return boot;
    }
    // No udev and no modalias for these: load them here, and mount efivarfs if the modules
    // thread has not yet (it may still be running, or found no module).
    if let Ok(index) = crate::modules::ModuleIndex::for_running_kernel(Path::new("/")) {
        for (name, result) in index.load(&MODULES) {
            if let Err(err) = result {
                console.warn(&format!("boot: module {name}: {err}"));
            }
        }
    }
    if let Err(err) = crate::mounts::mount(&crate::mounts::EFIVARFS) {
        console.warn(&format!("boot: {err}"));
    }
    let firmware = efi_var("LoaderFirmwareInfo").unwrap_or_default();
    let loader = efi_var("LoaderInfo").unwrap_or_default();
    let stub = efi_var("StubInfo").unwrap_or_default();
    let selected = efi_var("LoaderEntrySelected").unwrap_or_default();
    console.info(&format!(
        "boot: UEFI firmware {firmware:?} -> loader {loader:?} -> entry {selected:?} -> stub {stub:?}"
    ));
    boot.update(|s| {
        s.firmware = firmware;
        s.loader = loader;
        s.stub = stub;
        s.selected = selected.clone();
        s.booted = Entry::parse(&selected);
    });
    let esp = match mount_esp(config) {
        Ok(esp) => esp,
        Err(err) => {
            console.warn(&format!("boot: ESP not mounted: {err}; no slot management"));
            return boot;
        }
    };
    boot.update(|s| s.esp = Some(esp.clone()));
    let slots = boot.list();
    let booted = boot.state().booted;
    let outcome = outcome(&slots, booted.as_ref());
    for s in &slots {
        console.info(&format!(
            "boot: slot {} {} version {}{}",
            s.entry.slot,
            s.entry.file,
            s.version,
            if s.booted { " (booted)" } else { "" }
        ));
    }
    if outcome.starts_with("rolled back") {
        console.warn(&format!("boot: {outcome}"));
    } else {
        console.info(&format!("boot: {outcome}"));
    }
    boot.update(|s| s.outcome = outcome);

    // The booted entry as it is named now (systemd-boot renamed it when it counted the try).
    let trial = slots
        .iter()
        .find(|s| s.booted && s.entry.on_trial())
        .map(|s| s.entry.clone());
    if let Some(entry) = trial {
        let timeout = Duration::from_secs(config.trial_ready_timeout_secs);
        let shared = boot.clone();
        let spawned = std::thread::Builder::new()
            .name("boot-trial".into())
            .spawn(move || watch_trial(&shared, &esp, entry, timeout, logger, console));
        if let Err(err) = spawned {
            console.error(&format!("boot: cannot watch the trial boot: {err}"));
        }
    }
    boot
}

/// Waits for `berth ready`; blesses the entry, or reboots after `timeout`.
fn watch_trial(
    boot: &Slots,
    esp: &Path,
    entry: Entry,
    timeout: Duration,
    logger: &'static Logger,
    console: Console,
) {
    let started = Instant::now();
    while logger.ready_at().is_none() {
        if started.elapsed() >= timeout {
            let msg = format!(
                "boot: trial slot {} ({}) not ready after {} s; not blessing it, rebooting so the boot manager falls back",
                entry.slot,
                entry.file,
                timeout.as_secs()
            );
            console.error(&msg);
            boot.update(|s| s.outcome = msg.trim_start_matches("boot: ").to_string());
            // The same orderly reboot as Ctrl-Alt-Del (see control::server's Reboot).
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(1),
                nix::sys::signal::Signal::SIGINT,
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = esp.join(SLOT_DIR);
    let from = dir.join(&entry.file);
    let to = dir.join(entry.blessed_name());
    match std::fs::rename(&from, &to).and_then(|()| std::fs::File::open(&dir)?.sync_all()) {
        Ok(()) => {
            let msg = format!(
                "slot {} (generation {}) is good: berthd ready, {} renamed to {}",
                entry.slot,
                entry.generation,
                entry.file,
                entry.blessed_name()
            );
            console.notice(&format!("boot: {msg}"));
            boot.update(|s| {
                s.outcome = format!("upgraded: {msg}");
                s.booted = Entry::parse(&entry.blessed_name());
            });
        }
        Err(err) => console.error(&format!(
            "boot: cannot bless {}: {err}; the boot manager will fall back at the next boot",
            from.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_efi_strings() {
        let data: Vec<u8> = "berth-1-a.efi\0x"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(decode_efi_string(&data), "berth-1-a.efi");
    }

    #[test]
    fn outcome_names_the_rollback() {
        let slot = |n: &str, v: &str| SlotInfo {
            entry: Entry::parse(n).unwrap(),
            version: v.into(),
            booted: false,
        };
        let booted = Entry::parse("berth-1-a.efi").unwrap();
        let text = outcome(
            &[slot("berth-1-a.efi", "1"), slot("berth-2-b+0-1.efi", "2")],
            Some(&booted),
        );
        assert!(
            text.starts_with("rolled back: slot b (generation 2, version 2)"),
            "{text}"
        );
        let text = outcome(&[slot("berth-1-a.efi", "1")], Some(&booted));
        assert_eq!(text, "booted slot a (generation 1)");
    }
}
