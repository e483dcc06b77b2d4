//! Which job starts next, on which lane: pure policy, no processes.
//!
//! Jobs start longest first (by their estimate: the last run's duration, else a hint) so the
//! lanes finish close together, and a job starts only when no running job holds one of its
//! exclusive resources; a blocked job waits while later ones go ahead.

use std::collections::BTreeSet;

/// The scheduler's state over jobs `0..n`.
#[derive(Debug)]
pub struct Scheduler {
    /// Jobs not started yet, in start order.
    pending: Vec<usize>,
    /// Resources each job holds while it runs.
    resources: Vec<Vec<String>>,
    /// Resources held by running jobs.
    held: BTreeSet<String>,
    /// Lanes (1-based) with nothing running.
    free: BTreeSet<usize>,
}

/// Job indexes, longest estimate first; equal estimates keep their order.
pub fn start_order(estimates: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..estimates.len()).collect();
    order.sort_by(|&a, &b| estimates[b].total_cmp(&estimates[a]));
    order
}

impl Scheduler {
    /// `lanes` lanes (at least one); `resources[i]` are job `i`'s exclusive resources; jobs
    /// start in `order` as far as resources allow.
    pub fn new(lanes: usize, resources: Vec<Vec<String>>, order: Vec<usize>) -> Self {
        Self {
            pending: order,
            resources,
            held: BTreeSet::new(),
            free: (1..=lanes.max(1)).collect(),
        }
    }

    /// The next job to start and its lane, if a lane is free and a pending job's resources
    /// are all free. The job's resources are held until [`Scheduler::finished`].
    pub fn start_next(&mut self) -> Option<(usize, usize)> {
        let lane = *self.free.first()?;
        let position = self
            .pending
            .iter()
            .position(|&job| self.resources[job].iter().all(|r| !self.held.contains(r)))?;
        let job = self.pending.remove(position);
        self.held.extend(self.resources[job].iter().cloned());
        self.free.remove(&lane);
        Some((job, lane))
    }

    /// Job `job` on `lane` ended: its lane and resources are free again.
    pub fn finished(&mut self, job: usize, lane: usize) {
        for r in &self.resources[job] {
            self.held.remove(r);
        }
        self.free.insert(lane);
    }

    /// Jobs not started yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops every job not started (after an interruption).
    pub fn cancel_pending(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn longest_first_and_stable() {
        assert_eq!(start_order(&[1.0, 5.0, 1.0, 9.0]), [3, 1, 0, 2]);
    }

    #[test]
    fn lanes_fill_then_free() {
        let mut s = Scheduler::new(2, res(&[&[], &[], &[]]), vec![0, 1, 2]);
        assert_eq!(s.start_next(), Some((0, 1)));
        assert_eq!(s.start_next(), Some((1, 2)));
        assert_eq!(s.start_next(), None);
        s.finished(1, 2);
        assert_eq!(s.start_next(), Some((2, 2)));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn exclusive_resources_never_overlap_and_others_go_ahead() {
        let mut s = Scheduler::new(
            2,
            res(&[&["port 53"], &["port 53"], &[], &["port 53"]]),
            vec![0, 1, 2, 3],
        );
        assert_eq!(s.start_next(), Some((0, 1)));
        // Job 1 needs what job 0 holds: job 2 goes ahead.
        assert_eq!(s.start_next(), Some((2, 2)));
        s.finished(2, 2);
        assert_eq!(s.start_next(), None, "1 and 3 wait for port 53");
        s.finished(0, 1);
        assert_eq!(s.start_next(), Some((1, 1)));
        assert_eq!(s.start_next(), None);
        s.finished(1, 1);
        assert_eq!(s.start_next(), Some((3, 1)));
    }

    #[test]
    fn one_lane_is_sequential() {
        let mut s = Scheduler::new(0, res(&[&[], &[]]), vec![1, 0]);
        assert_eq!(s.start_next(), Some((1, 1)));
        assert_eq!(s.start_next(), None);
        s.finished(1, 1);
        assert_eq!(s.start_next(), Some((0, 1)));
        assert!(s.cancel_pending().is_empty());
    }
}
