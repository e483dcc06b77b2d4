//! Stage 1: PID 1 inside the initramfs. Mount the read-only OS tree and switch to it.
//!
//! Steps: pseudo filesystems → every module of the initramfs `modules.dep` (loop, erofs and
//! their dependencies) → `/berth/root.erofs` on a read-only loop device → erofs on
//! `/sysroot` → switch root → exec `/sbin/init` (stage 2) with [`STAGE2_FLAG`]. Any failure
//! is one error line and a power-off: PID 1 must never exit.

use std::path::Path;

use nix::mount::MsFlags;

use crate::console::Console;
use crate::loopdev::{self, LoopError};
use crate::modules::{ModuleError, ModuleIndex};
use crate::mounts::{self, MountError};
use crate::power::{self, PowerAction};
use crate::switch_root::{self, SwitchRootError};

/// The OS image inside the initramfs; its presence (as PID 1) means "stage 1".
pub const ROOT_IMAGE: &str = berth_layout::paths::ROOT_IMAGE;
/// Where the OS image is mounted before the switch.
pub const SYSROOT: &str = "/sysroot";
/// Stage 2's init in the new root.
pub const STAGE2_INIT: &str = "/sbin/init";
/// Argument stage 1 passes to stage 2.
pub const STAGE2_FLAG: &str = "--from-initramfs";

/// Errors of stage 1 (each fatal).
#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    /// A pseudo filesystem could not be mounted.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// The module index could not be read or a module could not be loaded.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The loop device could not be set up.
    #[error("cannot attach {ROOT_IMAGE}: {0}")]
    Loop(#[from] LoopError),
    /// Mounting the OS image failed.
    #[error("cannot mount {device} (erofs) on {SYSROOT}: {errno}")]
    MountRoot {
        /// The loop device.
        device: String,
        /// The kernel's answer.
        errno: nix::errno::Errno,
    },
    /// Switching root or exec'ing stage 2 failed.
    #[error("switch root failed: {0}")]
    SwitchRoot(#[from] SwitchRootError),
}

/// Whether this process should run stage 1.
pub fn detect() -> bool {
    nix::unistd::getpid().as_raw() == 1 && Path::new(ROOT_IMAGE).exists()
}

/// Runs stage 1; never returns (execs stage 2 or powers off).
pub fn run(console: Console) -> ! {
    let err = match try_run(console) {
        Ok(never) => match never {},
        Err(err) => err,
    };
    console.error(&format!("stage 1 failed: {err}; powering off"));
    power::finish(PowerAction::Poweroff, console)
}

fn try_run(console: Console) -> Result<std::convert::Infallible, Stage1Error> {
    for (spec, result) in mounts::mount_table(mounts::STAGE1_MOUNTS) {
        result?;
        console.debug(&format!("mounted {} on {}", spec.fstype, spec.target));
    }
    let index = ModuleIndex::for_running_kernel(Path::new("/"))?;
    crate::modules::report_issues(&index, console);
    let plan = index.plan(index.all())?;
    for name in &plan {
        index.load_one(name)?;
    }
    console.debug(&format!("stage 1 modules: {}", plan.join(" ")));
    let device = loopdev::attach_read_only(Path::new(ROOT_IMAGE), Path::new("/dev"))?;
    let _ = std::fs::create_dir_all(SYSROOT);
    nix::mount::mount(
        Some(&device),
        SYSROOT,
        Some("erofs"),
        MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|errno| Stage1Error::MountRoot {
        device: device.display().to_string(),
        errno,
    })?;
    console.debug(&format!(
        "mounted {ROOT_IMAGE} via {} on {SYSROOT}",
        device.display()
    ));
    Ok(switch_root::switch_root(
        Path::new(SYSROOT),
        STAGE2_INIT,
        &[STAGE2_FLAG],
    )?)
}
