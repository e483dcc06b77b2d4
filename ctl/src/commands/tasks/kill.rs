//! `berthctl tasks kill [-s SIGNAL] [--all] ID`: signals a task's init, or every process of
//! the container with `--all` (Tasks service, `Kill`). Signals by name (`KILL`, `SIGKILL`)
//! or number.

use berth_api::proto::tasks as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `tasks kill` arguments.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    #[arg(long, short = 's', default_value = "SIGTERM")]
    signal: String,
    /// Signal every process of the container.
    #[arg(long)]
    all: bool,
    id: String,
}

/// Sends the signal.
pub async fn run(g: &Globals, a: KillArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::KillRequest {
        container_id: a.id,
        signal: parse_signal(&a.signal)?,
        all: a.all,
        ..Default::default()
    };
    berthd
        .tasks()
        .kill(berthd.ctx(), &req)
        .await
        .map_err(Error::call("kill task"))?;
    Ok(())
}

/// `9`, `KILL` or `SIGKILL`.
fn parse_signal(s: &str) -> Result<u32, Error> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let name = if s.starts_with("SIG") {
        s.to_owned()
    } else {
        format!("SIG{s}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as u32)
        .map_err(|_| Error::Usage(format!("signal {s:?}: unknown")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(parse_signal("NOPE").is_err());
    }
}
