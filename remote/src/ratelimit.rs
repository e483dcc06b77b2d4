//! Rate-limited warnings for what untrusted peers can trigger (failed handshakes, refused
//! connections): at most a few lines per window, then one line counting what was dropped,
//! so a flood of bad clients cannot flood init's log ring.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A budget of lines per window.
#[derive(Debug)]
pub struct RateLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    start: Instant,
    used: u32,
    dropped: u64,
}

impl RateLimit {
    /// `per_window` lines per `window`.
    pub fn new(per_window: u32, window: Duration) -> RateLimit {
        RateLimit {
            per_window,
            window,
            state: Mutex::new(State {
                start: Instant::now(),
                used: 0,
                dropped: 0,
            }),
        }
    }

    /// Whether a line may be written now; when a new window starts, `Some(n)` of the lines
    /// dropped in the last one comes along (log it once).
    pub fn check(&self) -> (bool, Option<u64>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut dropped = None;
        if s.start.elapsed() >= self.window {
            if s.dropped > 0 {
                dropped = Some(s.dropped);
            }
            *s = State {
                start: Instant::now(),
                used: 0,
                dropped: 0,
            };
        }
        if s.used < self.per_window {
            s.used += 1;
            (true, dropped)
        } else {
            s.dropped += 1;
            (false, dropped)
        }
    }
}

/// A warning through `limit`: `warn!` when the budget allows, and the count of lines dropped
/// in the previous window.
#[macro_export]
#[doc(hidden)]
macro_rules! warn_limited {
    ($limit:expr, $($arg:tt)+) => {{
        let (ok, dropped) = $limit.check();
        if let Some(n) = dropped {
            tracing::warn!(dropped = n, "similar warnings suppressed in the last window");
        }
        if ok {
            tracing::warn!($($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_allows_its_budget_then_reports_the_rest() {
        let l = RateLimit::new(2, Duration::from_millis(50));
        assert_eq!(l.check(), (true, None));
        assert_eq!(l.check(), (true, None));
        assert_eq!(l.check(), (false, None));
        assert_eq!(l.check(), (false, None));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check(), (true, Some(2)));
    }
}
