//! `berthctl content put FILE|-`: ingests a file or standard input as a blob of the namespace
//! (Content service, `Write`, committed by digest) and prints its digest. A dropped upload
//! resumes under the same `--ref`.

use std::fs::File;
use std::io;

use crate::commands::parse_labels;
use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `content put` arguments.
#[derive(Debug, clap::Args)]
pub struct PutArgs {
    file: String,
    /// Ingest ref (default: derived from the file name and time); a dropped upload
    /// resumes under the same ref.
    #[arg(long)]
    r#ref: Option<String>,
    /// `key=value`; repeatable.
    #[arg(long, short = 'l')]
    label: Vec<String>,
}

/// Stores the blob.
pub async fn run(g: &Globals, a: PutArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    let labels = parse_labels(&a.label)?;
    let file = a.file;
    let reference = a.r#ref.unwrap_or_else(|| {
        format!(
            "berthctl-{}-{}",
            file,
            berth_api::time::nanos(std::time::SystemTime::now())
        )
    });
    let digest = if file == "-" {
        client
            .write_content(&reference, &mut io::stdin().lock(), labels)
            .await?
    } else {
        let mut f = File::open(&file).map_err(Error::io(format!("open {file}")))?;
        client.write_content(&reference, &mut f, labels).await?
    };
    println!("{digest}");
    Ok(())
}
