//! virtio-serial port names.
//!
//! QEMU names each port of a `virtserialport` (`name=…`); the guest kernel shows the name in
//! `/sys/class/virtio-ports/vportNpM/name` and devtmpfs creates `/dev/vportNpM`. There is no
//! vsock on the hosts berth is tested on, so these ports are how a host reaches a guest.

/// berthd's ttrpc API, bridged by init to `/run/berth/berthd.sock` (init's `[bridge] port`).
pub const API: &str = "org.berth.api";

/// init's own control API (`berth.services.system.v1.System`).
pub const INIT: &str = "org.berth.init";

/// The test agent of test images (`berth-test-agent --port …`); never in production images.
pub const TEST: &str = "org.berth.test";

/// The TCP port of the remote API (berth-apid: mutual TLS, docs/remote-api.md), on the node
/// and as berthctl's default for `--remote HOST`. Not a virtio-serial port: the one network
/// port of a node.
pub const REMOTE_API: u16 = 7443;
