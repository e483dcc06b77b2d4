//! `Shim.Attach`: the server end of a process's stdio stream (protocol in
//! `api/proto/berth/stdio/v1/stdio.proto`). berthd relays its clients' `Tasks.Attach`
//! streams here unchanged, so the credits counted here are the client's own.
//!
//! One task reads the client's messages and never waits on anything else — stdin goes to a
//! writer task, acks raise the output credit — so a process that does not read its stdin
//! cannot keep the client's acks from arriving (which would deadlock a `cat` whose output is
//! full). The output is sent while credit is left; the exit last.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use berth_api::errdefs;
use berth_api::proto::stdio as pb;
use berth_api::stdio::{response, window, MAX_STDIN_CHUNK, STDIN_WINDOW};
use berth_engine::tasks::shim::output::{Event, Stream};
use berth_engine::tasks::shim::Shim;
use pb::attach_request::Msg as In;
use pb::attach_response::Msg as Out;
use ttrpc::r#async::ServerStream;

fn invalid(msg: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INVALID_ARGUMENT, msg))
}

/// What the stdin writer does next.
enum Input {
    Data(Vec<u8>),
    Close,
}

/// Serves one attach until the process's exit was sent or the client detached.
pub async fn serve(
    shim: &Arc<Shim>,
    stream: ServerStream<pb::AttachResponse, pb::AttachRequest>,
) -> ttrpc::Result<()> {
    let (tx, mut rx) = stream.split();
    let open = match rx.recv().await? {
        Some(pb::AttachRequest {
            msg: Some(In::Open(o)),
            ..
        }) => o,
        _ => return Err(invalid("the first message of an attach must be `open`")),
    };
    let mut a = shim
        .attach(&open.exec_id, open.stdin, open.tty)
        .map_err(|e| errdefs::status(&e))?;
    if open.tty {
        if let Some(ws) = open.size.as_ref() {
            let _ = a.io.resize(clamp(ws.width), clamp(ws.height));
        }
    }
    tx.send(&response(Out::Attached(pb::Attached {
        pid: a.pid,
        terminal: a.io.terminal,
        stdin: open.stdin,
        stdin_window: STDIN_WINDOW,
        ..Default::default()
    })))
    .await?;

    // Stdin: written in order by one task, each message acknowledged once written (or
    // dropped because the process is gone), so the client's credit comes back either way.
    // The queue is bounded by the credit: `outstanding` counts what the client sent and the
    // writer has not acknowledged yet, and a client going beyond its window is refused.
    let (in_tx, mut in_rx) = tokio::sync::mpsc::unbounded_channel::<Input>();
    let outstanding = Arc::new(AtomicI64::new(0));
    let writer = {
        let (io, tx, outstanding) = (a.io.clone(), tx.clone(), outstanding.clone());
        tokio::spawn(async move {
            while let Some(op) = in_rx.recv().await {
                match op {
                    Input::Data(d) => {
                        let _ = io.write_stdin(&d).await;
                        outstanding.fetch_sub(d.len() as i64, Ordering::SeqCst);
                        let ack = response(Out::StdinAck(d.len() as u32));
                        if tx.send(&ack).await.is_err() {
                            break;
                        }
                    }
                    Input::Close => {
                        let _ = io.close_stdin().await;
                    }
                }
            }
        })
    };

    let mut credit = i64::from(window(&open));
    let result = loop {
        tokio::select! {
            req = rx.recv() => match req {
                Ok(Some(m)) => match m.msg {
                    Some(In::Stdin(d)) if open.stdin => {
                        let n = d.len() as i64;
                        let now = outstanding.fetch_add(n, Ordering::SeqCst) + n;
                        if d.len() > MAX_STDIN_CHUNK || now > i64::from(STDIN_WINDOW) {
                            break Err(invalid("stdin beyond the window the shim granted"));
                        }
                        let _ = in_tx.send(Input::Data(d));
                    }
                    Some(In::CloseStdin(true)) if open.stdin => {
                        let _ = in_tx.send(Input::Close);
                    }
                    Some(In::Stdin(_)) | Some(In::CloseStdin(true)) => {
                        break Err(invalid("stdin was not attached (open it with `stdin`)"));
                    }
                    Some(In::Resize(ws)) => {
                        let _ = a.io.resize(clamp(ws.width), clamp(ws.height));
                    }
                    Some(In::Ack(n)) => credit += i64::from(n),
                    Some(In::Open(_)) => break Err(invalid("`open` comes once")),
                    // Unknown (newer) messages are ignored.
                    _ => {}
                },
                // The client closed its side (detached), or its connection is gone.
                Ok(None) | Err(_) => break Ok(()),
            },
            ev = a.output.next(), if credit > 0 => match ev {
                Some(Event::Output(c)) => {
                    credit -= c.data.len() as i64;
                    let msg = match c.stream {
                        Stream::Stdout => Out::Stdout(c.data.to_vec()),
                        Stream::Stderr => Out::Stderr(c.data.to_vec()),
                    };
                    if tx.send(&response(msg)).await.is_err() {
                        break Ok(());
                    }
                }
                Some(Event::Exit(e)) => {
                    let msg = Out::Exit(pb::ExitStatus {
                        exit_status: e.exit_status,
                        exited_at: e.exited_at,
                        ..Default::default()
                    });
                    let _ = tx.send(&response(msg)).await;
                    break Ok(());
                }
                None => break Ok(()),
            },
        }
    };
    writer.abort();
    result
}

fn clamp(v: u32) -> u16 {
    u16::try_from(v).unwrap_or(u16::MAX)
}
