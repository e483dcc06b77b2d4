//! ttrpc framing, as far as the listener needs it: the 10-byte frame header, the length cap
//! checked before any payload is allocated, decoding the `Request` that opens a stream, and
//! building the `Response` frame that refuses one.
//!
//! The format is ttrpc 0.10's (`ttrpc/src/proto.rs`): length u32 BE, stream id u32 BE, type
//! u8, flags u8, then `length` payload bytes. Requests carry a protobuf `ttrpc.Request`
//! (service, method, payload, timeout, metadata); responses a `ttrpc.Response` (status,
//! payload); data frames a message of the method's stream.

use std::collections::HashMap;

use protobuf::Message as _;

pub use ttrpc::proto::{
    FLAG_NO_DATA, FLAG_REMOTE_CLOSED, FLAG_REMOTE_OPEN, MESSAGE_TYPE_DATA, MESSAGE_TYPE_REQUEST,
    MESSAGE_TYPE_RESPONSE,
};

/// Bytes in a frame header.
pub const HEADER_LEN: usize = ttrpc::proto::MESSAGE_HEADER_LENGTH;
/// ttrpc's own cap on a frame's payload (4 MiB): berth's services never send more, so the
/// listener's default is the same.
pub const TTRPC_MAX_FRAME: u32 = ttrpc::proto::MESSAGE_LENGTH_MAX as u32;

/// Errors reading frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announces more than the cap; nothing was allocated for it.
    #[error("frame of {length} bytes on stream {stream_id} exceeds the cap of {max} bytes")]
    TooLong {
        /// Announced payload length.
        length: u32,
        /// The stream it names.
        stream_id: u32,
        /// The cap in force.
        max: u32,
    },
    /// A Request payload that is no `ttrpc.Request`.
    #[error("undecodable ttrpc Request: {0}")]
    BadRequest(#[source] protobuf::Error),
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload bytes after the header.
    pub length: u32,
    /// The stream (one call) the frame belongs to; clients use odd ids.
    pub stream_id: u32,
    /// `MESSAGE_TYPE_REQUEST`, `_RESPONSE` or `_DATA`.
    pub kind: u8,
    /// `FLAG_*` bits.
    pub flags: u8,
}

impl Header {
    /// Reads a header from its wire bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            length: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            kind: b[8],
            flags: b[9],
        }
    }

    /// The wire bytes of the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..4].copy_from_slice(&self.length.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8] = self.kind;
        b[9] = self.flags;
        b
    }

    /// Refuses a payload longer than `max` — called on the header alone, before a single
    /// payload byte is read or allocated.
    pub fn check_length(&self, max: u32) -> Result<(), FrameError> {
        if self.length > max {
            return Err(FrameError::TooLong {
                length: self.length,
                stream_id: self.stream_id,
                max,
            });
        }
        Ok(())
    }

    /// Whether this frame, sent by the server, ends its stream: a Response always does, a
    /// data frame with `FLAG_REMOTE_CLOSED` does (ttrpc's client forgets the stream on both).
    pub fn ends_stream(&self) -> bool {
        self.kind == MESSAGE_TYPE_RESPONSE
            || (self.kind == MESSAGE_TYPE_DATA && self.flags & FLAG_REMOTE_CLOSED != 0)
    }
}

/// What the listener reads from the Request that opens a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Fully qualified service, e.g. `berth.services.tasks.v1.Tasks`.
    pub service: String,
    /// Method name, e.g. `Create`.
    pub method: String,
    /// The request's metadata (ttrpc's key → values).
    pub metadata: HashMap<String, Vec<String>>,
}

impl Call {
    /// `/<service>/<method>`, the path ttrpc logs and refusals name.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.service, self.method)
    }
}

/// Decodes a Request payload (ttrpc's own `ttrpc::proto::Request`).
pub fn decode_request(payload: &[u8]) -> Result<Call, FrameError> {
    let req = ttrpc::proto::Request::parse_from_bytes(payload).map_err(FrameError::BadRequest)?;
    Ok(Call {
        service: req.service,
        method: req.method,
        metadata: ttrpc::context::from_pb(&req.metadata),
    })
}

/// A whole Response frame on `stream_id` carrying only a status: what an ordinary ttrpc
/// client reads as the call's error.
pub fn status_frame(stream_id: u32, code: ttrpc::Code, message: &str) -> Vec<u8> {
    let mut resp = ttrpc::proto::Response::new();
    resp.set_status(ttrpc::get_status(code, message));
    let payload = resp
        .write_to_bytes()
        .expect("encoding a Response into memory cannot fail");
    let header = Header {
        length: payload.len() as u32,
        stream_id,
        kind: MESSAGE_TYPE_RESPONSE,
        flags: 0,
    };
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&header.encode());
    frame.extend_from_slice(&payload);
    frame
}

/// The status a Response payload carries, as (code, message); an undecodable payload reads
/// as `UNKNOWN` (it is the server's answer, relayed as is; this is only for the audit line).
pub fn response_status(payload: &[u8]) -> (ttrpc::Code, String) {
    match ttrpc::proto::Response::parse_from_bytes(payload) {
        Ok(r) => match r.status.into_option() {
            Some(s) => (s.code(), s.message),
            None => (ttrpc::Code::OK, String::new()),
        },
        Err(e) => (ttrpc::Code::UNKNOWN, format!("undecodable response: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_big_endian() {
        let h = Header {
            length: 0x0102_0304,
            stream_id: 7,
            kind: MESSAGE_TYPE_DATA,
            flags: FLAG_REMOTE_CLOSED | FLAG_NO_DATA,
        };
        let b = h.encode();
        assert_eq!(&b[..4], &[1, 2, 3, 4]);
        assert_eq!(&b[4..8], &[0, 0, 0, 7]);
        assert_eq!(Header::parse(&b), h);
        assert!(h.ends_stream());
        // ttrpc's own encoder agrees.
        let theirs: Vec<u8> = ttrpc::proto::MessageHeader {
            length: h.length,
            stream_id: h.stream_id,
            type_: h.kind,
            flags: h.flags,
        }
        .into();
        assert_eq!(theirs, b.to_vec());
    }

    #[test]
    fn a_one_gib_header_is_refused_on_the_header_alone() {
        let h = Header::parse(&[0x40, 0, 0, 0, 0, 0, 0, 1, MESSAGE_TYPE_REQUEST, 0]);
        assert_eq!(h.length, 1 << 30);
        let e = h.check_length(TTRPC_MAX_FRAME).unwrap_err();
        assert!(e.to_string().contains("1073741824"), "{e}");
        Header {
            length: TTRPC_MAX_FRAME,
            ..h
        }
        .check_length(TTRPC_MAX_FRAME)
        .unwrap();
    }

    #[test]
    fn requests_decode_and_refusals_encode() {
        let mut req = ttrpc::proto::Request::new();
        req.service = "berth.services.version.v1.Version".into();
        req.method = "Version".into();
        let mut kv = ttrpc::proto::KeyValue::new();
        kv.key = "berth-namespace".into();
        kv.value = "edge".into();
        req.metadata.push(kv);
        let call = decode_request(&req.write_to_bytes().unwrap()).unwrap();
        assert_eq!(call.path(), "/berth.services.version.v1.Version/Version");
        assert_eq!(call.metadata["berth-namespace"], vec!["edge".to_string()]);
        assert!(decode_request(&[0xff, 0xff, 0xff]).is_err());

        let f = status_frame(5, ttrpc::Code::PERMISSION_DENIED, "no");
        let h = Header::parse(f[..HEADER_LEN].try_into().unwrap());
        assert_eq!((h.stream_id, h.kind), (5, MESSAGE_TYPE_RESPONSE));
        assert_eq!(h.length as usize, f.len() - HEADER_LEN);
        let (code, msg) = response_status(&f[HEADER_LEN..]);
        assert_eq!((code, msg.as_str()), (ttrpc::Code::PERMISSION_DENIED, "no"));
    }
}
