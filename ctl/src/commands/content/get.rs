//! `berthctl content get DIGEST [-o FILE]`: a blob's bytes, streamed (Content service,
//! `Read`) to standard output or a file.

use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::connect;
use crate::error::Error;
use crate::globals::Globals;

/// `content get` arguments.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    digest: String,
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

/// Copies the blob out.
pub async fn run(g: &Globals, a: GetArgs) -> Result<(), Error> {
    let client = connect::storage(g).await?;
    match a.output {
        Some(path) => {
            let mut f =
                File::create(&path).map_err(Error::io(format!("create {}", path.display())))?;
            client.read_content(&a.digest, &mut f).await?;
        }
        None => {
            client
                .read_content(&a.digest, &mut io::stdout().lock())
                .await?;
        }
    }
    Ok(())
}
