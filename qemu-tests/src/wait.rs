//! Hang guards: poll a condition until it holds or a generous timeout expires.
//!
//! Shaped like cloud-hypervisor's `test_infra::wait_until`. The elapsed time is returned so
//! scenarios can report it; they never assert on it.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Calls `check` every `interval` until it returns true; fails after `timeout`.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> bool,
) -> Result<Duration> {
    wait_until_ok(what, timeout, interval, || {
        if check() {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .map(|((), elapsed)| elapsed)
}

/// Calls `attempt` every `interval` until it succeeds; returns its value and the time it took.
/// On timeout the error carries the last failure.
pub fn wait_until_ok<T, E: Display>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut attempt: impl FnMut() -> std::result::Result<T, E>,
) -> Result<(T, Duration)> {
    let started = Instant::now();
    loop {
        let last = match attempt() {
            Ok(value) => return Ok((value, started.elapsed())),
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.into(),
                timeout,
                context: format!("\nlast attempt: {last}"),
            });
        }
        thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_or_the_last_error() {
        let mut n = 0;
        let (v, _) = wait_until_ok(
            "n",
            Duration::from_secs(5),
            Duration::from_millis(1),
            || {
                n += 1;
                if n == 3 {
                    Ok(n)
                } else {
                    Err(format!("n={n}"))
                }
            },
        )
        .unwrap();
        assert_eq!(v, 3);
        let e = wait_until(
            "never",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("waiting for never"), "{e}");
    }
}
