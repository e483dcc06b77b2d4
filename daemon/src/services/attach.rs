//! `Tasks.Attach` in berthd: a relay. The client's stream and a stream to the task's shim
//! (`Shim.Attach`) carry the same messages (`berth.stdio.v1`), so berthd forwards each one
//! as it comes, both ways, and holds no stdio state: the credits are the client's and the
//! shim's, which bounds what berthd buffers to one window per client. The shim owns the
//! process's stdio, so a berthd restart or a client that goes away ends only the stream; the
//! process runs on and can be attached again.
//!
//! Ending: the shim ends the stream after the exit (or refuses the open with a status, which
//! goes back to the client as is); a client that closes its side (detach) has that close
//! forwarded, and the shim then ends the stream. A client whose connection is gone is noticed
//! at the next message berthd cannot deliver; berthd then closes its side towards the shim.
//! When berthd stops, every relay ends at once with UNAVAILABLE (ttrpc would otherwise wait
//! 10 s for them before letting berthd exit).

use berth_api::proto::stdio as pb;
use berth_engine::tasks::exec::ShimAttach;
use ttrpc::r#async::{SSReceiver, SSSender};

fn lost(e: ttrpc::Error) -> ttrpc::Error {
    match e {
        ttrpc::Error::RpcStatus(s) => ttrpc::Error::RpcStatus(s),
        other => ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::UNAVAILABLE,
            format!("lost the stream to the task's shim: {other}"),
        )),
    }
}

/// Relays between the client (`tx`, `rx`, whose `open` was `first`) and `shim` until the
/// shim ends the stream, or berthd stops (`stopping` turns true).
pub async fn relay(
    first: pb::AttachRequest,
    tx: SSSender<pb::AttachResponse>,
    mut rx: SSReceiver<pb::AttachRequest>,
    shim: ShimAttach,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> ttrpc::Result<()> {
    let (to_shim, mut from_shim) = shim.split();
    to_shim.send(&first).await.map_err(lost)?;
    let closer = to_shim.clone();
    let up = async move {
        loop {
            match rx.recv().await {
                Ok(Some(m)) => {
                    if to_shim.send(&m).await.is_err() {
                        return;
                    }
                }
                // Detached, or the client's connection is gone.
                Ok(None) | Err(_) => {
                    let _ = to_shim.close_send().await;
                    return;
                }
            }
        }
    };
    let down = async move {
        loop {
            match from_shim.recv().await {
                Ok(m) => tx.send(&m).await?,
                Err(ttrpc::Error::Eof) => return Ok(()),
                Err(e) => return Err(lost(e)),
            }
        }
    };
    let stop = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    tokio::pin!(up, down, stop);
    let result = tokio::select! {
        r = &mut down => r,
        () = &mut up => tokio::select! {
            r = &mut down => r,
            () = &mut stop => Ok(()),
        },
        () = &mut stop => Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::UNAVAILABLE,
            "berthd is stopping; the process goes on (attach again once berthd is back)",
        ))),
    };
    // Whatever ended it, the shim must forget this client (a no-op when already closed).
    let _ = closer.close_send().await;
    result
}
