//! The in-memory ring: the last records within a byte budget, each with a gapless sequence
//! number so readers (file writer, forwarder, `system log -f`) resume where they were and
//! count what the ring dropped before they got to it.

use std::collections::VecDeque;

use super::record::{Filter, Record};

/// Records within `capacity` bytes (by [`Record::cost`]); the oldest go first.
#[derive(Debug)]
pub struct Ring {
    records: VecDeque<Record>,
    bytes: usize,
    capacity: usize,
    next_seq: u64,
}

/// What a reader got from [`Ring::read_from`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The matching records, oldest first.
    pub records: Vec<Record>,
    /// Records dropped by the ring between the requested sequence number and the oldest kept.
    pub missed: u64,
    /// Where to read from next time.
    pub next: u64,
}

impl Ring {
    /// An empty ring holding up to `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: VecDeque::new(),
            bytes: 0,
            capacity,
            next_seq: 0,
        }
    }

    /// Appends `record` (its `seq` is assigned here), dropping the oldest records to stay
    /// within the budget, and returns the sequence number. A record alone larger than the whole
    /// budget has its message cut.
    pub fn push(&mut self, mut record: Record) -> u64 {
        record.seq = self.next_seq;
        self.next_seq += 1;
        let overhead = record.cost() - record.message.len();
        if record.cost() > self.capacity {
            let mut keep = self.capacity.saturating_sub(overhead);
            while keep > 0 && !record.message.is_char_boundary(keep) {
                keep -= 1;
            }
            record.message.truncate(keep);
        }
        self.bytes += record.cost();
        self.records.push_back(record);
        while self.bytes > self.capacity {
            match self.records.pop_front() {
                Some(old) => self.bytes -= old.cost(),
                None => break,
            }
        }
        self.next_seq - 1
    }

    /// Changes the budget, dropping the oldest records to fit.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.bytes > self.capacity {
            match self.records.pop_front() {
                Some(old) => self.bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The sequence number of the oldest record kept (= `next_seq` when empty).
    pub fn first_seq(&self) -> u64 {
        self.records.front().map_or(self.next_seq, |r| r.seq)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.first_seq()
    }

    /// Matching records with `seq >= from`, at most `limit`, oldest first.
    pub fn read_from(&self, from: u64, filter: &Filter, limit: usize) -> Batch {
        let first = self.first_seq();
        let missed = first.saturating_sub(from);
        let start = from.max(first);
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let mut records = Vec::new();
        let mut next = start;
        for record in self.records.iter().skip(skip) {
            if records.len() >= limit {
                break;
            }
            next = record.seq + 1;
            if filter.matches(record) {
                records.push(record.clone());
            }
        }
        Batch {
            records,
            missed,
            next: next.max(start),
        }
    }

    /// The last `n` matching records, oldest first.
    pub fn tail(&self, n: usize, filter: &Filter) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .records
            .iter()
            .rev()
            .filter(|r| filter.matches(r))
            .take(n)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Facility, Origin, Severity};
    use super::*;

    fn rec(message: &str, severity: Severity) -> Record {
        Record::now(
            Origin::Init,
            Facility::DAEMON,
            severity,
            "berth-init",
            message,
        )
    }

    #[test]
    fn keeps_within_budget_and_drops_oldest() {
        let one = rec("0123456789", Severity::Info).cost();
        let mut ring = Ring::new(one * 3);
        for i in 0..5 {
            assert_eq!(ring.push(rec(&format!("012345678{i}"), Severity::Info)), i);
        }
        assert!(ring.bytes() <= one * 3);
        assert_eq!(ring.first_seq(), 2);
        assert_eq!(ring.dropped(), 2);
        let batch = ring.read_from(0, &Filter::default(), 100);
        assert_eq!(batch.missed, 2);
        assert_eq!(
            batch.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(batch.next, 5);
        // Caught up: nothing new, nothing missed.
        let batch = ring.read_from(5, &Filter::default(), 100);
        assert_eq!(
            batch,
            Batch {
                records: vec![],
                missed: 0,
                next: 5
            }
        );
    }

    #[test]
    fn read_from_filters_limits_and_advances_past_skipped() {
        let mut ring = Ring::new(1 << 20);
        ring.push(rec("a", Severity::Debug));
        ring.push(rec("b", Severity::Err));
        ring.push(rec("c", Severity::Debug));
        ring.push(rec("d", Severity::Warning));
        let errors = Filter {
            min_severity: Severity::Warning,
            source: None,
        };
        let batch = ring.read_from(0, &errors, 1);
        assert_eq!(
            batch
                .records
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(batch.next, 2);
        let batch = ring.read_from(batch.next, &errors, 10);
        assert_eq!(
            batch
                .records
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
        assert_eq!(batch.next, 4);
    }

    #[test]
    fn shrinking_drops_the_oldest() {
        let one = rec("x", Severity::Info).cost();
        let mut ring = Ring::new(one * 10);
        for _ in 0..10 {
            ring.push(rec("x", Severity::Info));
        }
        ring.set_capacity(one * 4);
        assert_eq!((ring.first_seq(), ring.bytes()), (6, one * 4));
        ring.set_capacity(one * 100);
        ring.push(rec("x", Severity::Info));
        assert_eq!(ring.first_seq(), 6);
    }

    #[test]
    fn tail_is_the_last_matching() {
        let mut ring = Ring::new(1 << 20);
        for m in ["a", "b", "c", "d"] {
            ring.push(rec(
                m,
                if m == "c" {
                    Severity::Debug
                } else {
                    Severity::Info
                },
            ));
        }
        let info = Filter {
            min_severity: Severity::Info,
            source: None,
        };
        assert_eq!(
            ring.tail(2, &info)
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>(),
            ["b", "d"]
        );
        assert_eq!(ring.tail(10, &Filter::default()).len(), 4);
    }

    #[test]
    fn oversized_record_is_cut_to_fit() {
        let small = rec("", Severity::Info).cost();
        let mut ring = Ring::new(small + 8);
        ring.push(rec("héllo wörld, far too long", Severity::Info));
        let kept = ring.tail(1, &Filter::default());
        assert!(kept[0].message.len() <= 8, "{:?}", kept[0].message);
        assert!(ring.bytes() <= small + 8);
    }
}
