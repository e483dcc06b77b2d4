//! Which job starts next, on which lane: pure policy, no processes.
//!
//! Jobs start longest first (by their estimate: the last run's duration, else a hint) so the
//! lanes finish close together. A job claims resources, each shared or exclusive: it starts
//! only when no running job holds one of them exclusively and, for an exclusive claim, nobody
//! holds it at all. A blocked job waits while later ones go ahead, except later ones that
//! claim what it waits for (so an exclusive claim is not starved by a stream of shared ones).

use std::collections::{BTreeMap, BTreeSet};

/// A resource a job holds while it runs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    /// The resource's name.
    pub resource: String,
    /// Alone (true) or alongside other shared holders (false).
    pub exclusive: bool,
}

impl Claim {
    /// An exclusive claim.
    pub fn exclusive(resource: &str) -> Self {
        Self {
            resource: resource.into(),
            exclusive: true,
        }
    }

    /// A shared claim.
    pub fn shared(resource: &str) -> Self {
        Self {
            resource: resource.into(),
            exclusive: false,
        }
    }
}

/// The scheduler's state over jobs `0..n`.
#[derive(Debug)]
pub struct Scheduler {
    /// Jobs not started yet, in start order.
    pending: Vec<usize>,
    /// What each job claims while it runs.
    claims: Vec<Vec<Claim>>,
    /// Resources held exclusively by a running job.
    exclusive: BTreeSet<String>,
    /// Resources held shared, with the number of holders.
    shared: BTreeMap<String, usize>,
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
    /// `lanes` lanes (at least one); `claims[i]` is what job `i` holds while it runs; jobs
    /// start in `order` as far as the claims allow.
    pub fn new(lanes: usize, claims: Vec<Vec<Claim>>, order: Vec<usize>) -> Self {
        Self {
            pending: order,
            claims,
            exclusive: BTreeSet::new(),
            shared: BTreeMap::new(),
            free: (1..=lanes.max(1)).collect(),
        }
    }

    fn free_for(&self, claim: &Claim) -> bool {
        !self.exclusive.contains(&claim.resource)
            && (!claim.exclusive || !self.shared.contains_key(&claim.resource))
    }

    /// The next job to start and its lane, if a lane is free and a pending job's claims can
    /// be granted. They are held until [`Scheduler::finished`].
    pub fn start_next(&mut self) -> Option<(usize, usize)> {
        let lane = *self.free.first()?;
        // Resources earlier blocked jobs wait for: later jobs must not take them.
        let mut waited_for: BTreeSet<&str> = BTreeSet::new();
        let mut position = None;
        for (p, &job) in self.pending.iter().enumerate() {
            let claims = &self.claims[job];
            if claims
                .iter()
                .all(|c| self.free_for(c) && !waited_for.contains(c.resource.as_str()))
            {
                position = Some(p);
                break;
            }
            waited_for.extend(claims.iter().map(|c| c.resource.as_str()));
        }
        let job = self.pending.remove(position?);
        for c in &self.claims[job] {
            if c.exclusive {
                self.exclusive.insert(c.resource.clone());
            } else {
                *self.shared.entry(c.resource.clone()).or_default() += 1;
            }
        }
        self.free.remove(&lane);
        Some((job, lane))
    }

    /// Job `job` on `lane` ended: its lane and resources are free again.
    pub fn finished(&mut self, job: usize, lane: usize) {
        for c in &self.claims[job] {
            if c.exclusive {
                self.exclusive.remove(&c.resource);
            } else if let Some(n) = self.shared.get_mut(&c.resource) {
                *n -= 1;
                if *n == 0 {
                    self.shared.remove(&c.resource);
                }
            }
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

    /// Claims from `name` (exclusive) and `name?` (shared).
    fn res(list: &[&[&str]]) -> Vec<Vec<Claim>> {
        list.iter()
            .map(|r| {
                r.iter()
                    .map(|s| match s.strip_suffix('?') {
                        Some(name) => Claim::shared(name),
                        None => Claim::exclusive(s),
                    })
                    .collect()
            })
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
    fn shared_claims_overlap_and_exclude_the_exclusive_one_without_starving_it() {
        let mut s = Scheduler::new(
            2,
            res(&[&["bins?"], &["bins"], &["bins?"], &[]]),
            vec![0, 1, 2, 3],
        );
        assert_eq!(s.start_next(), Some((0, 1)));
        // Job 1 wants `bins` alone: it waits, and job 2 (shared `bins`) may not overtake it;
        // job 3 claims nothing and goes ahead.
        assert_eq!(s.start_next(), Some((3, 2)));
        s.finished(3, 2);
        assert_eq!(s.start_next(), None);
        s.finished(0, 1);
        assert_eq!(s.start_next(), Some((1, 1)));
        assert_eq!(s.start_next(), None, "2 waits for the exclusive holder");
        s.finished(1, 1);
        assert_eq!(s.start_next(), Some((2, 1)));
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
