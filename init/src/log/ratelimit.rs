//! Per-source rate limiting of messages that untrusted input can trigger (a garbage datagram
//! on `/dev/log`, a flood of warnings echoed to the slow serial console): at most `burst`
//! per `window` per source, then one summary of how many were suppressed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most sources tracked at once; a flood of distinct sources cannot grow memory further.
const MAX_SOURCES: usize = 64;

/// A fixed-window limiter keyed by source.
#[derive(Debug)]
pub struct RateLimiter {
    burst: u32,
    window: Duration,
    sources: HashMap<String, Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    count: u32,
    suppressed: u64,
}

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Emit it; `suppressed` messages of this source were dropped since the last one emitted.
    Emit {
        /// Dropped since the last emitted message.
        suppressed: u64,
    },
    /// Drop it (counted).
    Suppress,
}

impl RateLimiter {
    /// At most `burst` messages per `window` per source.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst,
            window,
            sources: HashMap::new(),
        }
    }

    /// Decides for one message from `source` at `now`.
    pub fn check(&mut self, source: &str, now: Instant) -> Verdict {
        if !self.sources.contains_key(source) && self.sources.len() >= MAX_SOURCES {
            let window = self.window;
            self.sources
                .retain(|_, w| now.duration_since(w.start) < window);
            if self.sources.len() >= MAX_SOURCES {
                // Still full of active sources: share one bucket for the newcomers.
                return self.check_key("(other sources)", now);
            }
        }
        self.check_key(source, now)
    }

    fn check_key(&mut self, source: &str, now: Instant) -> Verdict {
        let w = self.sources.entry(source.to_string()).or_insert(Window {
            start: now,
            count: 0,
            suppressed: 0,
        });
        if now.duration_since(w.start) >= self.window {
            w.start = now;
            w.count = 0;
        }
        if w.count < self.burst {
            w.count += 1;
            Verdict::Emit {
                suppressed: std::mem::take(&mut w.suppressed),
            }
        } else {
            w.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_suppress_then_summary() {
        let mut rl = RateLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rl.check("a", t0), Verdict::Emit { suppressed: 0 });
        assert_eq!(rl.check("a", t0), Verdict::Emit { suppressed: 0 });
        assert_eq!(rl.check("a", t0), Verdict::Suppress);
        assert_eq!(rl.check("a", t0), Verdict::Suppress);
        // Another source has its own budget.
        assert_eq!(rl.check("b", t0), Verdict::Emit { suppressed: 0 });
        // Next window: the summary comes with the first emitted message.
        assert_eq!(
            rl.check("a", t0 + Duration::from_secs(10)),
            Verdict::Emit { suppressed: 2 }
        );
        assert_eq!(
            rl.check("a", t0 + Duration::from_secs(10)),
            Verdict::Emit { suppressed: 0 }
        );
    }

    #[test]
    fn sources_are_bounded() {
        let mut rl = RateLimiter::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES {
            assert_eq!(
                rl.check(&i.to_string(), t0),
                Verdict::Emit { suppressed: 0 }
            );
        }
        assert_eq!(rl.check("new-1", t0), Verdict::Emit { suppressed: 0 });
        assert_eq!(rl.check("new-2", t0), Verdict::Suppress);
        assert!(rl.sources.len() <= MAX_SOURCES + 1);
        // Expired sources make room again.
        assert_eq!(
            rl.check("late", t0 + Duration::from_secs(11)),
            Verdict::Emit { suppressed: 0 }
        );
    }
}
