//! Several checks sharing one booted VM.
//!
//! A boot under TCG costs seconds of a host core, so checks that only read the guest (or
//! leave it as they found it, like a restarted berthd) run one after the other on one VM,
//! with the ones that end it (power-off, reboot) last. Each check is named, timed and
//! reported on its own; a failed check does not hide the later ones, and the scenario fails
//! at the end naming every check that failed.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The checks run so far on one VM.
#[derive(Debug, Default)]
pub struct Checks {
    results: Vec<(String, Duration, Option<String>)>,
}

impl Checks {
    /// No checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `check` as `name`, printing its outcome and duration; returns whether it passed.
    pub fn run<E: Display>(&mut self, name: &str, check: impl FnOnce() -> Result<(), E>) -> bool {
        println!("== check: {name}");
        let started = Instant::now();
        let outcome = check();
        let took = started.elapsed();
        let failure = outcome.err().map(|e| format!("{e:#}"));
        match &failure {
            None => println!("== check passed: {name} ({:.1} s)", took.as_secs_f64()),
            Some(e) => println!("== check FAILED: {name} ({:.1} s): {e}", took.as_secs_f64()),
        }
        self.results.push((name.to_string(), took, failure.clone()));
        failure.is_none()
    }

    /// Prints one line per check and fails if any check failed, naming them.
    pub fn finish(self) -> Result<()> {
        for (name, took, failure) in &self.results {
            println!(
                "check {:<6} {:>6.1} s  {name}",
                if failure.is_none() { "ok" } else { "FAILED" },
                took.as_secs_f64()
            );
        }
        let failed: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, _, f)| f.is_some())
            .map(|(n, _, _)| n.as_str())
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        Err(Error::Check {
            message: format!(
                "{} of {} checks failed: {}",
                failed.len(),
                self.results.len(),
                failed.join("; ")
            ),
            context: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_checks_run_after_a_failure_and_all_failures_are_named() {
        let mut checks = Checks::new();
        assert!(checks.run("one", || Ok::<(), String>(())));
        assert!(!checks.run("two", || Err("broken".to_string())));
        let mut ran = false;
        assert!(checks.run("three", || {
            ran = true;
            Ok::<(), String>(())
        }));
        assert!(ran);
        let e = checks.finish().unwrap_err().to_string();
        assert!(e.contains("1 of 3 checks failed: two"), "{e}");
        assert!(Checks::new().finish().is_ok());
    }
}
