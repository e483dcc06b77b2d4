//! The restart policy of a service, pure: which exits are failures, when to restart, how long
//! to wait ([`Backoff`]), when to give up ([`Tracker`]). No processes, no clock: the
//! supervisor feeds it what happened and does what it decides.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An exit this soon after the start counts as a failure even if the service was ready.
pub const QUICK_EXIT: Duration = Duration::from_secs(10);

/// When a service that exited is started again (`restart` in `init.toml`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// After any exit (the default; berthd always).
    #[default]
    Always,
    /// After an exit with a non-zero status or a signal; exit 0 means done.
    OnFailure,
    /// Never: the service runs once.
    Never,
}

/// Restart delays: `initial`, doubled per failure in a row, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Backoff {
    /// The delay before the restart that follows `failures` failures in a row (at least 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(30);
        self.initial
            .saturating_mul(1u32 << shift)
            .min(self.max.max(self.initial))
    }
}

/// What happens after a service exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after `delay`; `failures` in a row so far (0 after a good run).
    Restart {
        /// Wait this long.
        delay: Duration,
        /// Failures in a row, this one included.
        failures: u32,
    },
    /// Stop trying after `failures` failures in a row.
    GiveUp {
        /// Failures in a row.
        failures: u32,
    },
    /// Stop trying at once: the service said its configuration is invalid, and starting it
    /// again from the same read-only files cannot help.
    GiveUpConfig,
    /// Not restarted: the restart policy says this exit ends the service.
    Done,
}

pub use berth_api::EXIT_CONFIG;

/// The restart policy state of one service.
#[derive(Debug, Clone)]
pub struct Tracker {
    max_failures: u32,
    backoff: Backoff,
    policy: RestartPolicy,
    failures: u32,
}

impl Tracker {
    /// A tracker giving up after `max_failures` (at least 1) failures in a row, restarting
    /// after any exit ([`RestartPolicy::Always`]).
    pub fn new(max_failures: u32, backoff: Backoff) -> Self {
        Self {
            max_failures: max_failures.max(1),
            backoff,
            policy: RestartPolicy::Always,
            failures: 0,
        }
    }

    /// The same with another restart policy.
    pub fn with_policy(self, policy: RestartPolicy) -> Self {
        Self { policy, ..self }
    }

    /// Whether an exit counts as a failure.
    pub fn is_failure(was_ready: bool, ran: Duration) -> bool {
        !was_ready || ran < QUICK_EXIT
    }

    /// Records an exit (or a failed spawn, `failure = true`) and decides. `bad_config`: the
    /// service exited with [`EXIT_CONFIG`] before it was ready. `clean`: it exited with
    /// status 0 (what [`RestartPolicy::OnFailure`] looks at).
    pub fn on_exit(&mut self, failure: bool, bad_config: bool, clean: bool) -> Decision {
        match self.policy {
            RestartPolicy::Never => return Decision::Done,
            RestartPolicy::OnFailure if clean => return Decision::Done,
            _ => {}
        }
        if bad_config {
            self.failures += 1;
            return Decision::GiveUpConfig;
        }
        if !failure {
            self.failures = 0;
            return Decision::Restart {
                delay: self.backoff.initial,
                failures: 0,
            };
        }
        self.failures += 1;
        if self.failures >= self.max_failures {
            Decision::GiveUp {
                failures: self.failures,
            }
        } else {
            Decision::Restart {
                delay: self.backoff.delay(self.failures),
                failures: self.failures,
            }
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures (a restart asked for by an operator).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// The configured limit.
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_millis(5000),
    };

    #[test]
    fn backoff_doubles_and_caps() {
        let ms: Vec<u128> = (1..=8).map(|n| B.delay(n).as_millis()).collect();
        assert_eq!(ms, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(B.delay(0).as_millis(), 200);
        assert_eq!(B.delay(u32::MAX), Duration::from_millis(5000));
        let odd = Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(1),
        };
        assert_eq!(odd.delay(3), Duration::from_secs(10));
    }

    #[test]
    fn failure_classification() {
        assert!(Tracker::is_failure(false, Duration::from_secs(100)));
        assert!(Tracker::is_failure(true, Duration::from_secs(1)));
        assert!(!Tracker::is_failure(true, QUICK_EXIT));
    }

    #[test]
    fn gives_up_after_max_failures_in_a_row() {
        let mut t = Tracker::new(3, B);
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 1
            }
        );
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::Restart {
                delay: Duration::from_millis(400),
                failures: 2
            }
        );
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::GiveUp { failures: 3 }
        );
    }

    #[test]
    fn a_good_run_resets_the_count() {
        let mut t = Tracker::new(2, B);
        assert!(matches!(
            t.on_exit(true, false, false),
            Decision::Restart { failures: 1, .. }
        ));
        assert_eq!(
            t.on_exit(false, false, true),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 0
            }
        );
        assert!(matches!(
            t.on_exit(true, false, false),
            Decision::Restart { failures: 1, .. }
        ));
        assert_eq!(t.failures(), 1);
    }

    #[test]
    fn zero_max_failures_means_one() {
        let mut t = Tracker::new(0, B);
        assert_eq!(
            t.on_exit(true, false, false),
            Decision::GiveUp { failures: 1 }
        );
    }

    #[test]
    fn invalid_configuration_gives_up_at_once() {
        let mut t = Tracker::new(5, B);
        assert_eq!(t.on_exit(true, true, false), Decision::GiveUpConfig);
        assert_eq!(t.failures(), 1);
    }

    #[test]
    fn restart_policies() {
        let mut never = Tracker::new(5, B).with_policy(RestartPolicy::Never);
        assert_eq!(never.on_exit(true, false, false), Decision::Done);
        assert_eq!(never.on_exit(false, false, true), Decision::Done);
        let mut on_failure = Tracker::new(5, B).with_policy(RestartPolicy::OnFailure);
        assert_eq!(on_failure.on_exit(true, false, true), Decision::Done);
        assert_eq!(
            on_failure.on_exit(true, false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 1
            }
        );
        assert_eq!(
            on_failure.on_exit(false, false, false),
            Decision::Restart {
                delay: Duration::from_millis(200),
                failures: 0
            }
        );
        let policy: RestartPolicy = toml::from_str::<toml::Table>("p = \"on-failure\"").unwrap()
            ["p"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(policy, RestartPolicy::OnFailure);
    }
}
