//! The listener's configuration: the fixed part (address, backends, limits) and the live
//! part swapped atomically at run time ([`Live`]: the TLS configuration and the deny list).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::TTRPC_MAX_FRAME;
use crate::identity::Serial;

/// The port the listener binds by default.
pub const DEFAULT_PORT: u16 = berth_layout::ports::REMOTE_API;

/// Defences, with their defaults (docs/remote-api.md lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A TLS handshake must complete within this (slowloris before the handshake).
    pub handshake_timeout: Duration,
    /// A connection with no open stream and no frame for this long is closed. Connections
    /// with an open stream (`logs -f`, `events`) stay, however quiet: TCP keepalive finds
    /// vanished peers.
    pub idle_timeout: Duration,
    /// A frame, once its first byte arrived, must arrive whole within this; a frame to the
    /// client must be written within this (slowloris after the handshake, and clients that
    /// stop reading).
    pub frame_timeout: Duration,
    /// Open connections (handshaking or established); excess ones are closed on accept,
    /// before any TLS work.
    pub max_connections: usize,
    /// Handshakes in progress at once; excess connections are closed on accept.
    pub max_handshakes: usize,
    /// Open streams (calls) per connection; a Request beyond it is answered
    /// RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Largest frame payload, checked on the header before anything is allocated.
    pub max_frame: u32,
    /// Bytes of Request frames held in memory for decoding at once, over all connections
    /// (a Request is read whole to read its method; data frames are streamed through).
    pub request_budget: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_handshakes: 64,
            max_streams: 128,
            max_frame: TTRPC_MAX_FRAME,
            request_budget: 64 << 20,
        }
    }
}

/// Errors in a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A limit that cannot work.
    #[error("limit {name}: {why}")]
    Limit {
        /// Which limit.
        name: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A deny-list entry that is no hex serial.
    #[error("deny list: {0:?} is not a hex certificate serial")]
    Serial(String),
}

impl Limits {
    /// Checks that the limits can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, why| Err(ConfigError::Limit { name, why });
        if self.max_connections == 0 || self.max_handshakes == 0 || self.max_streams == 0 {
            return bad(
                "max_connections/max_handshakes/max_streams",
                "must be at least 1",
            );
        }
        if self.max_frame < 1024 || self.max_frame > TTRPC_MAX_FRAME {
            return bad("max_frame", "must be between 1 KiB and ttrpc's 4 MiB");
        }
        if self.request_budget < self.max_frame {
            return bad(
                "request_budget",
                "must hold at least one frame of max_frame",
            );
        }
        if self.handshake_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.frame_timeout.is_zero()
        {
            return bad("timeouts", "must be above zero");
        }
        Ok(())
    }
}

/// The two sockets the listener forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// berthd's ttrpc socket.
    pub berthd: PathBuf,
    /// berth-init's control socket (the System service).
    pub init: PathBuf,
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            berthd: berth_api::address::DEFAULT_ADDRESS.into(),
            init: berth_api::address::DEFAULT_INIT_ADDRESS.into(),
        }
    }
}

/// What is fixed for the listener's life.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to bind (`0.0.0.0:7443` on a node; `127.0.0.1:0` in tests).
    pub listen: SocketAddr,
    /// Where calls go.
    pub backends: Backends,
    /// Defences.
    pub limits: Limits,
}

/// Serials refused after the handshake (revoked client certificates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DenyList(BTreeSet<Serial>);

impl DenyList {
    /// From an operator's list of hex serials (any of [`Serial::parse`]'s spellings).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<DenyList, ConfigError> {
        entries
            .into_iter()
            .map(|e| Serial::parse(e).ok_or_else(|| ConfigError::Serial(e.to_string())))
            .collect::<Result<BTreeSet<_>, _>>()
            .map(DenyList)
    }

    /// Whether `serial` is denied.
    pub fn contains(&self, serial: &Serial) -> bool {
        self.0.contains(serial)
    }

    /// Number of serials.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What can change while the listener runs, swapped as a whole: new connections use the new
/// TLS configuration (a renewed node certificate, another CA), and every open connection
/// whose serial the new deny list holds is closed.
#[derive(Debug, Clone)]
pub struct Live {
    /// The node's TLS configuration ([`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Serials refused.
    pub deny: DenyList,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid_and_bad_ones_say_why() {
        Limits::default().validate().unwrap();
        let l = Limits {
            request_budget: 1,
            ..Limits::default()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .to_string()
            .contains("request_budget"));
        let l = Limits {
            max_frame: 1 << 30,
            ..Limits::default()
        };
        assert!(l.validate().is_err());
    }

    #[test]
    fn deny_lists_take_any_spelling_and_refuse_garbage() {
        let d = DenyList::parse(["0A:FF", "1234"]).unwrap();
        assert!(d.contains(&Serial::parse("aff").unwrap()));
        assert_eq!(d.len(), 2);
        assert!(DenyList::parse(["nope"]).is_err());
    }
}
