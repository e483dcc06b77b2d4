//! The TCP listener: accepts, caps connections and handshakes before any TLS work, runs the
//! mutual-TLS handshake within its timeout, reads the caller's identity, refuses denied
//! serials, and hands the connection to [`crate::relay`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

use crate::config::{ConfigError, DenyList, ListenerConfig, Live};
use crate::identity::Identity;
use crate::ratelimit::RateLimit;
use crate::relay::{self, Session};
use crate::warn_limited;

/// Errors starting the listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Counters, for tests and status.
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    refused_at_cap: AtomicU64,
    handshake_failed: AtomicU64,
    denied: AtomicU64,
    open: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// TCP connections accepted.
    pub accepted: u64,
    /// Connections closed on accept because a cap was reached.
    pub refused_at_cap: u64,
    /// Handshakes that failed or timed out (wrong CA, expired, plaintext, slow).
    pub handshake_failed: u64,
    /// Connections refused or closed for a denied serial.
    pub denied: u64,
    /// Authenticated connections open now.
    pub open: u64,
}

impl Stats {
    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: l(&self.accepted),
            refused_at_cap: l(&self.refused_at_cap),
            handshake_failed: l(&self.handshake_failed),
            denied: l(&self.denied),
            open: l(&self.open),
        }
    }
}

/// Reloads and counters of a running listener; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    live: Arc<watch::Sender<Arc<Live>>>,
    stats: Arc<Stats>,
}

impl Handle {
    /// Swaps the live configuration: new connections use its TLS configuration, and open
    /// connections of serials its deny list holds are closed (their open calls answered
    /// PERMISSION_DENIED).
    pub fn reload(&self, live: Live) {
        self.live.send_replace(Arc::new(live));
    }

    /// Replaces only the deny list.
    pub fn set_deny_list(&self, deny: DenyList) {
        let tls = self.live.borrow().tls.clone();
        self.reload(Live { tls, deny });
    }

    /// The counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// A bound listener.
pub struct Listener {
    tcp: TcpListener,
    cfg: ListenerConfig,
    handle: Handle,
}

/// What every connection task shares.
struct Common {
    cfg: ListenerConfig,
    live: Arc<watch::Sender<Arc<Live>>>,
    stats: Arc<Stats>,
    budget: Arc<Semaphore>,
    log_limit: RateLimit,
}

impl Listener {
    /// Validates `cfg` and binds its address.
    pub async fn bind(cfg: ListenerConfig, live: Live) -> Result<Listener, ListenError> {
        cfg.limits.validate()?;
        let tcp = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ListenError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let handle = Handle {
            live: Arc::new(watch::Sender::new(Arc::new(live))),
            stats: Arc::new(Stats::default()),
        };
        Ok(Listener { tcp, cfg, handle })
    }

    /// The bound address (the port, when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The handle for reloads and counters.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Serves until `shutdown` completes; open connections end with the runtime.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let limits = self.cfg.limits;
        let common = Arc::new(Common {
            budget: Arc::new(Semaphore::new(limits.request_budget as usize)),
            cfg: self.cfg,
            live: self.handle.live.clone(),
            stats: self.handle.stats.clone(),
            log_limit: RateLimit::new(10, Duration::from_secs(10)),
        });
        let connections = Arc::new(Semaphore::new(limits.max_connections));
        let handshakes = Arc::new(Semaphore::new(limits.max_handshakes));
        let addr = self.tcp.local_addr().unwrap_or(common.cfg.listen);
        info!(%addr, "remote API listening");
        tokio::pin!(shutdown);
        loop {
            let (sock, peer) = tokio::select! {
                _ = &mut shutdown => break,
                r = self.tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn_limited!(common.log_limit, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            common.stats.accepted.fetch_add(1, Ordering::Relaxed);
            let permits = connections
                .clone()
                .try_acquire_owned()
                .and_then(|c| handshakes.clone().try_acquire_owned().map(|h| (c, h)));
            let Ok((conn_permit, hs_permit)) = permits else {
                common.stats.refused_at_cap.fetch_add(1, Ordering::Relaxed);
                warn_limited!(common.log_limit, %peer, "connection refused: connection or handshake cap reached");
                drop(sock);
                continue;
            };
            tune(&sock);
            tokio::spawn(connection(
                common.clone(),
                sock,
                peer,
                conn_permit,
                hs_permit,
            ));
        }
        info!("remote API stopped listening");
    }
}

/// TCP_NODELAY (ttrpc is request/response), and keepalive so that a vanished client's
/// long-lived stream (`logs -f`) does not hold a connection forever.
fn tune(sock: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = sock.set_nodelay(true);
    let _ = setsockopt(sock, sockopt::KeepAlive, &true);
    let _ = setsockopt(sock, sockopt::TcpKeepIdle, &60);
    let _ = setsockopt(sock, sockopt::TcpKeepInterval, &10);
    let _ = setsockopt(sock, sockopt::TcpKeepCount, &6);
}

async fn connection(
    common: Arc<Common>,
    sock: TcpStream,
    peer: SocketAddr,
    _conn_permit: OwnedSemaphorePermit,
    hs_permit: OwnedSemaphorePermit,
) {
    let limits = common.cfg.limits;
    let live = common.live.subscribe();
    let acceptor = tokio_rustls::TlsAcceptor::from(live.borrow().tls.clone());
    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(sock)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            common
                .stats
                .handshake_failed
                .fetch_add(1, Ordering::Relaxed);
            warn_limited!(common.log_limit, %peer, error = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            common
                .stats
                .handshake_failed
                .fetch_add(1, Ordering::Relaxed);
            warn_limited!(common.log_limit, %peer, timeout = ?limits.handshake_timeout, "TLS handshake timed out");
            return;
        }
    };
    drop(hs_permit);
    let identity = match Identity::of_peer(tls.get_ref().1.peer_certificates()) {
        Ok(id) => id,
        Err(e) => {
            warn_limited!(common.log_limit, %peer, error = %e, "connection refused");
            return;
        }
    };
    if live.borrow().deny.contains(&identity.serial) {
        common.stats.denied.fetch_add(1, Ordering::Relaxed);
        warn_limited!(common.log_limit, %peer, %identity, "connection refused: certificate serial denied");
        let msg = format!(
            "certificate serial {} is denied on this node",
            identity.serial
        );
        relay::refuse_first(tls, &msg, limits.max_frame, limits.handshake_timeout).await;
        return;
    }
    debug!(%peer, %identity, "connection opened");
    let session = Arc::new(Session {
        identity,
        peer,
        backends: common.cfg.backends.clone(),
        limits,
        budget: common.budget.clone(),
    });
    common.stats.open.fetch_add(1, Ordering::Relaxed);
    let end = relay::run(session.clone(), tls, live).await;
    common.stats.open.fetch_sub(1, Ordering::Relaxed);
    if end == relay::End::Denied {
        common.stats.denied.fetch_add(1, Ordering::Relaxed);
        info!(%peer, identity = %session.identity, "connection closed: certificate serial denied by a reload");
    } else {
        debug!(%peer, identity = %session.identity, %end, "connection closed");
    }
}
