//! `berthctl images …`: image records (Images service), pulling (Pull service), archives in
//! and out and read-only mounts (Transfer service).

mod export;
mod import;
mod ls;
mod mount;
mod pull;
mod rm;
mod unmount;

use clap::Subcommand;

use crate::error::Error;
use crate::globals::Globals;
use crate::output::ListOpts;

/// `berthctl images` verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List images of the namespace.
    #[command(alias = "list")]
    Ls(ListOpts),
    /// Remove images; their content goes at the next garbage collection.
    #[command(alias = "remove", alias = "delete")]
    Rm(rm::RmArgs),
    /// Pull an image from a registry (through the configured mirrors) and unpack it.
    Pull(pull::PullArgs),
    /// Import an OCI image-layout or `docker save` archive and unpack it.
    Import(import::ImportArgs),
    /// Export images to an OCI image-layout archive.
    Export(export::ExportArgs),
    /// Mount an image's filesystem read-only (a view snapshot).
    Mount(mount::MountArgs),
    /// Unmount what `images mount` mounted and remove its view snapshot.
    Unmount(unmount::UnmountArgs),
}

/// Runs one `images` verb.
pub async fn run(g: &Globals, command: Command) -> Result<(), Error> {
    match command {
        Command::Ls(opts) => ls::run(g, opts).await,
        Command::Rm(a) => rm::run(g, a).await,
        Command::Pull(a) => pull::run(g, a).await,
        Command::Import(a) => import::run(g, a).await,
        Command::Export(a) => export::run(g, a).await,
        Command::Mount(a) => mount::run(g, a).await,
        Command::Unmount(a) => unmount::run(g, a).await,
    }
}

/// The snapshot key of the view mounted on `target`: one per mount point, so `unmount` finds
/// it again from the path alone.
fn view_key(target: &std::path::Path) -> String {
    let abs = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let text = abs.display().to_string();
    let hex: String = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(
        text.as_bytes(),
    ))
    .iter()
    .take(8)
    .map(|b| format!("{b:02x}"))
    .collect();
    format!("mount-{hex}")
}
