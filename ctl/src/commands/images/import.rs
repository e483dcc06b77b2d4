//! `berthctl images import FILE|-`: streams an OCI image-layout or `docker save` archive to
//! berthd (Transfer service, `Import`, a client stream), which stores and unpacks its images;
//! prints what was imported.

use std::io::Read;

use berth_api::proto::transfer as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;
use crate::output::{print_json, Format};

/// `images import` arguments.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// OCI image-layout tar or `docker save` tar; `-` reads standard input.
    file: String,
    #[arg(long, default_value = "", help = concat!(
        "Snapshotter to unpack into (", snapshotters!(), "; default: berthd's default)"
    ))]
    snapshotter: String,
    /// Platform to import and unpack (`os/arch[/variant]`, default linux/amd64).
    #[arg(long, default_value = "")]
    platform: String,
    /// Store content and image records only.
    #[arg(long)]
    no_unpack: bool,
    #[arg(long, value_parser = Format::undescribed(), default_value_t = Format::Table)]
    format: Format,
    /// Print only image names.
    #[arg(long, short = 'q')]
    quiet: bool,
}

/// Imports the archive and reports the images.
pub async fn run(g: &Globals, a: ImportArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let resp = if a.file == "-" {
        send(&berthd, std::io::stdin().lock(), &a).await
    } else {
        let f = std::fs::File::open(&a.file).map_err(Error::io(&a.file))?;
        send(&berthd, std::io::BufReader::new(f), &a).await
    }?;
    if a.quiet {
        for i in &resp.images {
            println!("{}", i.name);
        }
    } else if a.format == Format::Json {
        let images: Vec<_> = resp
            .images
            .iter()
            .map(|i| {
                serde_json::json!({"name": i.name, "media_type": i.media_type, "digest": i.digest, "size": i.size,
                "chain_id": i.chain_id, "layers_applied": i.layers_applied, "layers_reused": i.layers_reused})
            })
            .collect();
        print_json(
            &serde_json::json!({"images": images, "bytes": resp.bytes, "millis": resp.millis}),
        );
    } else {
        for i in &resp.images {
            let unpacked = if i.chain_id.is_empty() {
                "not unpacked".to_string()
            } else {
                format!(
                    "unpacked: {} layers applied, {} reused",
                    i.layers_applied, i.layers_reused
                )
            };
            println!("{} {} ({unpacked})", i.name, i.digest);
        }
        println!(
            "imported {} image(s), {} bytes in {} ms",
            resp.images.len(),
            resp.bytes,
            resp.millis
        );
    }
    Ok(())
}

/// Streams `input` in chunks (the first carries the options) and returns berthd's answer.
async fn send(
    berthd: &Berthd,
    mut input: impl Read,
    a: &ImportArgs,
) -> Result<pb::ImportResponse, Error> {
    let mut stream = berthd
        .transfer()
        .import(berthd.stream_ctx())
        .await
        .map_err(Error::call("Transfer.Import"))?;
    let mut first = true;
    let mut buf = vec![0u8; berth_api::MAX_CHUNK];
    loop {
        let n = read_full(&mut input, &mut buf).map_err(Error::io("archive"))?;
        if n == 0 && !first {
            break;
        }
        let mut chunk = pb::ImportChunk {
            data: buf[..n].to_vec(),
            ..Default::default()
        };
        if first {
            chunk.snapshotter = a.snapshotter.clone();
            chunk.platform = a.platform.clone();
            chunk.no_unpack = a.no_unpack;
            first = false;
        }
        if stream.send(&chunk).await.is_err() {
            // berthd closed the stream early: its answer says why.
            break;
        }
        if n == 0 {
            break;
        }
    }
    stream
        .close_and_recv()
        .await
        .map_err(Error::call("Transfer.Import"))
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
