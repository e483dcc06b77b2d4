//! Time: set the clock from SNTP servers at boot, keep it right afterwards.
//!
//! Edge nodes often have no (or a dead) RTC and boot in 1970 or wherever the RTC stopped;
//! TLS to a registry mirror then fails on certificate dates. At boot, [`stage`] asks the
//! servers (`[time] servers`, else the NTP servers learned by DHCP option 42 or `ip=`'s
//! ntp0) and steps the clock (`clock_settime`) when it is off by more than
//! `step_threshold_ms`, or slews it (`adjtime`) when it is close. A thread then polls every
//! `poll_secs` and slews; only an offset beyond `[time] max_slew_secs` is stepped again.

pub mod floor;
pub mod sntp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::console::Console;
use sntp::{Nanos, Sample};

/// The NTP port.
pub const NTP_PORT: u16 = 123;

/// `[time]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// SNTP servers: IP addresses, optionally with a port (`10.0.0.1`, `10.0.0.1:123`,
    /// `[fd00::1]:123`). Empty: the servers DHCP (option 42) or `ip=` gave.
    pub servers: Vec<String>,
    /// How long boot waits for a first answer before starting berthd anyway.
    pub wait_secs: u64,
    /// At boot, offsets larger than this are stepped, smaller ones slewed.
    pub step_threshold_ms: u64,
    /// Seconds between polls after boot (0: no polling).
    pub poll_secs: u64,
    /// After boot, offsets larger than this are stepped anyway (slewing would take days).
    pub max_slew_secs: u64,
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            wait_secs: 5,
            step_threshold_ms: 1000,
            poll_secs: 1024,
            max_slew_secs: 600,
        }
    }
}

/// Errors setting the clock.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    /// `clock_settime(CLOCK_REALTIME)` failed.
    #[error("clock_settime: {0}")]
    Step(#[source] nix::errno::Errno),
    /// `adjtime` failed.
    #[error("adjtime: {0}")]
    Slew(#[source] nix::errno::Errno),
}

/// Reads a `servers` entry.
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, NTP_PORT))
        .map_err(|_| {
            format!("{text:?} is not an IP address or address:port (names are not resolved)")
        })
}

/// The time stage: validates `[time]` (one error line per bad server), picks the servers
/// (configuration, else `learned` from DHCP/`ip=`), sets the clock once (waiting up to
/// `wait_secs`), then keeps polling on a thread. Returns when the first attempt is over.
pub fn stage(
    config: &TimeConfig,
    learned: &[Ipv4Addr],
    sources: &crate::net::config::Sources,
    console: Console,
) {
    let mut servers = Vec::new();
    for (i, text) in config.servers.iter().enumerate() {
        match parse_server(text) {
            Ok(addr) => servers.push(addr),
            Err(e) => {
                let at = sources.locate("time.servers", text, None);
                console.error(&format!("{at}: key time.servers[{i}]: {e}; ignored"));
            }
        }
    }
    let from = if servers.is_empty() {
        servers.extend(
            learned
                .iter()
                .map(|ip| SocketAddr::new(IpAddr::V4(*ip), NTP_PORT)),
        );
        "DHCP"
    } else {
        "configuration"
    };
    if servers.is_empty() {
        console.info("time: no SNTP server configured or offered by DHCP; clock left as is");
        return;
    }
    let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
    console.debug(&format!("time: servers {} (from {from})", list.join(" ")));
    let deadline = Instant::now() + Duration::from_secs(config.wait_secs);
    let step_threshold = i128::from(config.step_threshold_ms) * 1_000_000;
    match first_sample(&servers, deadline) {
        Some((server, sample)) => apply(sample, server, step_threshold, console),
        None => console.warn(&format!(
            "time: no answer from {} within {}s; clock not set (retrying every {}s)",
            list.join(" "),
            config.wait_secs,
            config.poll_secs.clamp(1, 64)
        )),
    }
    if config.poll_secs == 0 {
        return;
    }
    let poll = Duration::from_secs(config.poll_secs);
    let max_slew = i128::from(config.max_slew_secs) * 1_000_000_000;
    let spawned = std::thread::Builder::new()
        .name("sntp".into())
        .spawn(move || {
            let mut synced = false;
            loop {
                // Until a first success, retry sooner.
                std::thread::sleep(if synced {
                    poll
                } else {
                    poll.min(Duration::from_secs(64))
                });
                if let Some((server, sample)) =
                    first_sample(&servers, Instant::now() + Duration::from_secs(5))
                {
                    apply(
                        sample,
                        server,
                        if synced { max_slew } else { step_threshold },
                        console,
                    );
                    synced = true;
                }
            }
        });
    if let Err(err) = spawned {
        console.warn(&format!("time: cannot start the polling thread: {err}"));
    }
}

/// The first good sample of the servers, in order, trying again until `deadline`.
fn first_sample(servers: &[SocketAddr], deadline: Instant) -> Option<(SocketAddr, Sample)> {
    loop {
        for server in servers {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if let Ok(sample) = sntp::query(*server, left.min(Duration::from_secs(2))) {
                return Some((*server, sample));
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(
            Duration::from_millis(500).min(deadline.saturating_duration_since(Instant::now())),
        );
    }
}

/// Steps (beyond `step_threshold`) or slews the clock by `sample.offset`, with one line.
fn apply(sample: Sample, server: SocketAddr, step_threshold: Nanos, console: Console) {
    let secs = sample.offset as f64 / 1e9;
    let delay_ms = sample.delay as f64 / 1e6;
    if sample.offset.abs() > step_threshold {
        match step(sample.offset) {
            Ok(()) => console.info(&format!(
                "time: stepped the clock by {secs:+.3}s from {server} (delay {delay_ms:.1}ms)"
            )),
            Err(err) => console.error(&format!(
                "time: cannot step the clock by {secs:+.3}s: {err}"
            )),
        }
    } else {
        match slew(sample.offset) {
            Ok(()) => console.info(&format!(
                "time: slewing the clock by {secs:+.6}s from {server} (delay {delay_ms:.1}ms)"
            )),
            Err(err) => console.warn(&format!(
                "time: cannot slew the clock by {secs:+.6}s: {err}"
            )),
        }
    }
}

/// `CLOCK_REALTIME += offset`.
pub fn step(offset: Nanos) -> Result<(), TimeError> {
    let target = sntp::now_nanos() + offset;
    let spec = nix::sys::time::TimeSpec::new(
        target.div_euclid(1_000_000_000) as libc::time_t,
        target.rem_euclid(1_000_000_000) as libc::c_long,
    );
    nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, spec).map_err(TimeError::Step)
}

/// Slews the clock by `offset` with adjtime(3) (the kernel spreads it at 0.5 ms/s).
pub fn slew(offset: Nanos) -> Result<(), TimeError> {
    let micros = offset / 1000;
    let delta = libc::timeval {
        tv_sec: micros.div_euclid(1_000_000) as libc::time_t,
        tv_usec: micros.rem_euclid(1_000_000) as libc::suseconds_t,
    };
    // SAFETY: `delta` is a valid timeval; a null old-delta pointer is allowed.
    let res = unsafe { libc::adjtime(&delta, std::ptr::null_mut()) };
    nix::errno::Errno::result(res)
        .map(drop)
        .map_err(TimeError::Slew)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_parse_with_default_port() {
        assert_eq!(
            parse_server("10.0.2.2").unwrap(),
            "10.0.2.2:123".parse().unwrap()
        );
        assert_eq!(
            parse_server("10.0.2.2:1234").unwrap(),
            "10.0.2.2:1234".parse().unwrap()
        );
        assert_eq!(
            parse_server("[fd00::1]:123").unwrap(),
            "[fd00::1]:123".parse().unwrap()
        );
        assert!(parse_server("pool.ntp.org")
            .unwrap_err()
            .contains("names are not resolved"));
    }

    #[test]
    fn first_sample_gives_up_at_the_deadline() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let started = Instant::now();
        assert!(first_sample(
            &[silent.local_addr().unwrap()],
            started + Duration::from_millis(300)
        )
        .is_none());
        println!("gave up after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(5), "hang guard");
    }
}
