//! `berthctl events [TOPIC-PREFIX…]`: container and task events as they happen (Events
//! service, `Subscribe`), one line each — `<unix-nanos> <namespace> <topic> <json>` — until
//! interrupted or berthd goes away. Events of every namespace: `-n` does not filter them.

use std::io::Write;

use berth_api::proto::events as pb;

use crate::connect::Berthd;
use crate::error::Error;
use crate::globals::Globals;

/// `events` arguments.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Topic prefixes (e.g. /tasks/exit); none: all.
    topics: Vec<String>,
}

/// Prints events until the stream ends (or standard output is closed).
pub async fn run(g: &Globals, a: EventsArgs) -> Result<(), Error> {
    let berthd = Berthd::connect(g).await?;
    let req = pb::SubscribeRequest {
        topics: a.topics,
        ..Default::default()
    };
    // No namespace and no deadline: every namespace's events, for as long as we listen.
    let mut stream = berthd
        .events()
        .subscribe(ttrpc::context::Context::default(), &req)
        .await
        .map_err(Error::call("subscribe"))?;
    loop {
        match stream.recv().await {
            Ok(Some(e)) => {
                let mut o = std::io::stdout();
                let line = format!("{} {} {} {}\n", e.timestamp, e.namespace, e.topic, e.event);
                if o.write_all(line.as_bytes())
                    .and_then(|()| o.flush())
                    .is_err()
                {
                    return Ok(());
                }
            }
            Ok(None) | Err(ttrpc::Error::Eof) => return Ok(()),
            Err(source) => return Err(Error::call("events")(source)),
        }
    }
}
