//! berth-remote: the remote API of a berth node (issue 16; docs/remote-api.md).
//!
//! A node has no shell; operators reach berthd and init over the network through one TCP
//! port: TLS 1.3 with mutual authentication, the caller's role read from its client
//! certificate, every ttrpc call checked against ONE role table before it is forwarded.
//!
//! - [`listener`]: accepts, caps, handshakes, identifies, refuses denied serials;
//! - [`relay`]: one connection's ttrpc frames, routed per stream to berthd or init;
//! - [`frame`]: ttrpc framing (header, length cap before allocation, Request/Response);
//! - [`table`]: the role table and routing; [`roles`]: roles and classes; [`policy`]: the
//!   decision on one call; [`identity`]: CN, serial and roles of a certificate;
//! - [`config`]: limits and the live (reloadable) part; [`tls`]: rustls configurations;
//! - [`audit`]: the audit line of mutating calls; [`ratelimit`]: bounded warnings;
//! - [`pki`]: fleet CA, node and client certificates (for `berthctl pki`); [`certinfo`]:
//!   reading them back (subject, role, serial, validity, fingerprint);
//! - [`client`]: the client side (a ttrpc client over TLS, checked against the node name);
//! - [`apid`]: the `berth-apid` applet; [`fetch`]: the `berth-fetch` applet (a PXE node's
//!   configuration over HTTPS with the server's certificate pinned).

pub mod apid;
pub mod audit;
pub mod certinfo;
pub mod client;
pub mod config;
pub mod fetch;
pub mod frame;
pub mod identity;
pub mod listener;
pub mod pki;
pub mod policy;
pub mod ratelimit;
pub mod relay;
pub mod roles;
pub mod table;
pub mod tls;

pub use config::{Backends, DenyList, Limits, ListenerConfig, Live};
pub use listener::{Handle, Listener};
