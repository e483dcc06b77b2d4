//! `berthctl system …`: berth-init's control API (`berth.services.system.v1.System` at
//! `--init-address`: `/run/berth/init.sock` on a node, or the host end of the
//! `org.berth.init` virtio-serial port) — boot stages and services, the log, reboot,
//! power-off, service restarts, A/B upgrades and configuration reloads.

mod log;
mod poweroff;
mod reboot;
pub mod reload;
mod restart;
mod status;
mod upgrade;

use clap::Subcommand;

use crate::connect::Init;
use crate::error::Error;
use crate::globals::Globals;

/// `berthctl system` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot stages with their durations, boot-to-ready, services, init's memory.
    Status(status::StatusArgs),
    /// init's log: kernel, /dev/log, services and init itself.
    Log(log::LogArgs),
    /// Reboot the node (orderly, like Ctrl-Alt-Del).
    Reboot,
    /// Power the node off (orderly, like SIGTERM to init).
    Poweroff,
    /// Restart one supervised service.
    Restart(restart::RestartArgs),
    /// Read init's configuration again and apply what can change now (the remote API, its
    /// credentials and deny list); berthd reloads too. Like SIGHUP to init.
    Reload(reload::ReloadArgs),
    /// Install a unified kernel image (from `berth-image uki`) into the inactive A/B slot,
    /// to be tried once at the next boot (docs/upgrades.md).
    Upgrade(upgrade::UpgradeArgs),
}

/// Runs one `system` verb against berth-init.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    let init = Init::connect(g).await?;
    match command {
        Command::Status(a) => status::run(&init, a).await,
        Command::Log(a) => log::run(&init, a).await,
        Command::Reboot => reboot::run(&init).await,
        Command::Poweroff => poweroff::run(&init).await,
        Command::Restart(a) => restart::run(&init, a).await,
        Command::Upgrade(a) => upgrade::run(&init, a).await,
        Command::Reload(a) => reload::run(&init, a).await,
    }
}
