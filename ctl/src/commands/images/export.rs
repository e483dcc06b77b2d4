//! `berthctl images export -o FILE|- NAME…`: an OCI image-layout tar of images, streamed from
//! berthd (Transfer service, `Export`). A file is written next to its target and renamed at
//! the end, so a failed export leaves no partial file behind.

use std::io::Write;

use berth_api::proto::transfer as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `images export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output file (`-` for standard output).
    #[arg(long, short = 'o')]
    output: String,
    /// Images to export.
    #[arg(required = true)]
    names: Vec<String>,
}

/// Exports the images.
pub async fn run(g: &Globals, a: ExportArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    if a.output == "-" {
        receive(&berthd, &a.names, std::io::stdout().lock()).await?;
        return Ok(());
    }
    let tmp = format!("{}.partial", a.output);
    let f = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    match receive(&berthd, &a.names, std::io::BufWriter::new(f)).await {
        Ok(n) => {
            std::fs::rename(&tmp, &a.output).map_err(Error::io(&a.output))?;
            eprintln!(
                "exported {} image(s) to {} ({n} bytes)",
                a.names.len(),
                a.output
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes the tar of `names` to `out`; returns the bytes written.
async fn receive(berthd: &Berthd, names: &[String], mut out: impl Write) -> Result<u64, Error> {
    let req = pb::ExportRequest {
        names: names.to_vec(),
        ..Default::default()
    };
    let mut stream = berthd
        .transfer()
        .export(berthd.stream_ctx(), &req)
        .await
        .map_err(Error::call("Transfer.Export"))?;
    let mut total = 0u64;
    while let Some(chunk) = stream
        .recv()
        .await
        .map_err(Error::call("Transfer.Export"))?
    {
        out.write_all(&chunk.data).map_err(Error::io("output"))?;
        total += chunk.data.len() as u64;
    }
    out.flush().map_err(Error::io("output"))?;
    Ok(total)
}
