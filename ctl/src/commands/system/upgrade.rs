//! `berthctl system upgrade FILE [--reboot]`: streams a unified kernel image to init in
//! chunks (System service, `UpgradeBegin`/`UpgradeWrite`/`UpgradeCommit`), which installs it
//! into the inactive A/B slot to be tried once at the next boot (docs/upgrades.md).

use std::path::{Path, PathBuf};

use berth_api::proto::system as pb;
use berth_api::MAX_CHUNK;

use crate::connect::Init;
use crate::error::Error;

/// `system upgrade` arguments.
#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The UKI (`.efi`).
    file: PathBuf,
    /// Reboot into it once it is installed.
    #[arg(long)]
    reboot: bool,
}

/// Installs the image, then reboots into it with `--reboot`.
pub(super) async fn run(init: &Init, a: UpgradeArgs) -> Result<(), Error> {
    upgrade(init, &a.file).await?;
    if a.reboot {
        super::reboot::reboot(init).await?;
        println!("rebooting into it");
    }
    Ok(())
}

/// Streams `file` to init and commits it into the inactive slot.
async fn upgrade(init: &Init, file: &Path) -> Result<(), Error> {
    use sha2::{Digest, Sha256};
    let data = std::fs::read(file).map_err(Error::io(format!("cannot read {}", file.display())))?;
    let sha: String = Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let started = std::time::Instant::now();
    let begin = pb::UpgradeBeginRequest {
        size: data.len() as u64,
        sha256: sha.clone(),
        ..Default::default()
    };
    init.call(
        "UpgradeBegin",
        init.client.upgrade_begin(init.ctx(), &begin),
    )
    .await?;
    for (i, chunk) in data.chunks(MAX_CHUNK).enumerate() {
        let req = pb::UpgradeWriteRequest {
            offset: (i * MAX_CHUNK) as u64,
            data: chunk.to_vec(),
            ..Default::default()
        };
        init.call("UpgradeWrite", init.client.upgrade_write(init.ctx(), &req))
            .await?;
    }
    let done = init
        .call(
            "UpgradeCommit",
            init.client
                .upgrade_commit(init.ctx(), &pb::UpgradeCommitRequest::new()),
        )
        .await?;
    println!(
        "installed {} ({} bytes, sha256 {sha}) in slot {} as {} (version {}) in {:.1}s; it is tried once at the next boot",
        file.display(),
        data.len(),
        done.slot,
        done.file,
        done.version,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
