//! `berthctl tasks logs [-f] [--tail N] ID`: a task's output, stdout and stderr interleaved,
//! from its log files (Tasks service, `Logs`, a server stream); `-f` follows until the task
//! exits.

use std::io::Write;

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks logs` arguments.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep printing new output until the task exits.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the last N lines (no `-n`: that is the namespace).
    #[arg(long)]
    tail: Option<u64>,
    id: String,
}

/// Copies the output to ours (until standard output is closed).
pub async fn run(g: &Globals, a: LogsArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::LogsRequest {
        container_id: a.id,
        follow: a.follow,
        tail: a.tail.map_or(-1, |t| t.min(i64::MAX as u64) as i64),
        ..Default::default()
    };
    let mut stream = berthd
        .tasks()
        .logs(berthd.stream_ctx(), &req)
        .await
        .map_err(Error::call("logs"))?;
    let mut o = std::io::stdout();
    loop {
        match stream.recv().await {
            Ok(Some(c)) => {
                if o.write_all(&c.data).and_then(|()| o.flush()).is_err() {
                    return Ok(());
                }
            }
            Ok(None) | Err(ttrpc::Error::Eof) => return Ok(()),
            Err(source) => return Err(Error::call("logs")(source)),
        }
    }
}
