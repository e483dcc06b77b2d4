//! The wire constants of container stdio over the API (`Tasks.Attach`, relayed by berthd to
//! `Shim.Attach`; protocol in `proto/berth/stdio/v1/stdio.proto` and docs/containers.md),
//! shared by the shim (the server end) and [`crate::client::stdio`] (the client end).

use crate::proto::stdio as pb;

/// Output bytes a client accepts before its first ack when its `open` says 0.
pub const DEFAULT_WINDOW: u32 = 1 << 20;

/// The largest output window a client may ask for (bigger asks are cut to it): what berthd
/// and the shim may hold in flight for one client.
pub const MAX_WINDOW: u32 = 8 << 20;

/// Stdin bytes a client may send before the shim acknowledges them (`attached.stdin_window`).
pub const STDIN_WINDOW: u32 = 256 << 10;

/// The largest stdin payload of one message.
pub const MAX_STDIN_CHUNK: usize = 64 << 10;

/// The window a client's `open` asks for, as the server applies it.
pub fn window(open: &pb::AttachOpen) -> u32 {
    match open.window {
        0 => DEFAULT_WINDOW,
        w => w.min(MAX_WINDOW),
    }
}

/// An `AttachRequest` carrying `msg`.
pub fn request(msg: pb::attach_request::Msg) -> pb::AttachRequest {
    pb::AttachRequest {
        msg: Some(msg),
        ..Default::default()
    }
}

/// An `AttachResponse` carrying `msg`.
pub fn response(msg: pb::attach_response::Msg) -> pb::AttachResponse {
    pb::AttachResponse {
        msg: Some(msg),
        ..Default::default()
    }
}
