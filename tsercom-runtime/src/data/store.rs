//! One caller's time-ordered series, with the bookkeeping that lets readers find what
//! arrived since their cursor without scanning everything.

use std::collections::VecDeque;

use super::Timestamped;
use crate::Timestamp;

/// A stored item and the aggregator-wide arrival number it got on insert.
#[derive(Debug)]
pub(super) struct Entry<D> {
    pub(super) arrival: u64,
    pub(super) item: Timestamped<D>,
}

/// A caller's items sorted by time (ties in arrival order).
///
/// In-order arrival appends (amortised O(1)). An out-of-order arrival is inserted at its
/// place and also recorded in `late`, so that the entries with `arrival > cursor` are
/// always "the suffix after the last entry with `arrival <= cursor`" plus the `late`
/// entries with `arrival > cursor`. `late` is complete for arrivals above `late_floor`;
/// a cursor below the floor (a reader created after trimming) falls back to a full
/// scan. `late` is trimmed to what the slowest live reader still needs, is not kept at
/// all while there are no readers, and loses expired records from its front, so its
/// memory stays bounded by the retention.
#[derive(Debug)]
pub(super) struct Store<D> {
    pub(super) entries: VecDeque<Entry<D>>,
    late: VecDeque<(u64, Timestamp)>,
    late_floor: u64,
    last_arrival: u64,
    /// The source disconnected ([`super::CallerEvent::Left`] was emitted).
    pub(super) left: bool,
}

/// What [`Store::arrived_since`] found: indices of entries, ascending.
#[derive(Debug, Default)]
pub(super) struct Arrived {
    /// Entries before `suffix` (late arrivals), ascending.
    before: Vec<usize>,
    /// The entries at the end that all arrived after the cursor.
    suffix: std::ops::Range<usize>,
}

impl Arrived {
    /// The indices, ascending.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.before.iter().copied().chain(self.suffix.clone())
    }

    /// How many indices there are.
    pub(super) fn len(&self) -> usize {
        self.before.len() + self.suffix.len()
    }

    /// The last (greatest) index, if any.
    pub(super) fn last(&self) -> Option<usize> {
        if self.suffix.is_empty() {
            self.before.last().copied()
        } else {
            Some(self.suffix.end - 1)
        }
    }
}

impl<D> Store<D> {
    pub(super) fn new() -> Self {
        Store {
            entries: VecDeque::new(),
            late: VecDeque::new(),
            late_floor: 0,
            last_arrival: 0,
            left: false,
        }
    }

    /// Stores `item`. `track_late` is false when no reader exists: then nobody needs
    /// late-arrival records (a reader made later starts with a full scan).
    pub(super) fn push(&mut self, arrival: u64, item: Timestamped<D>, track_late: bool) {
        self.last_arrival = arrival;
        match self.entries.back() {
            Some(last) if item.time < last.item.time => {
                let time = item.time;
                let at = self.entries.partition_point(|e| e.item.time <= time);
                self.entries.insert(at, Entry { arrival, item });
                if track_late {
                    self.late.push_back((arrival, time));
                } else {
                    self.late.clear();
                    self.late_floor = arrival;
                }
            }
            _ => self.entries.push_back(Entry { arrival, item }),
        }
    }

    /// The arrival number of the last item pushed (0 if none).
    pub(super) fn last_arrival(&self) -> u64 {
        self.last_arrival
    }

    /// Drops entries older than `cutoff`. Returns whether anything was dropped.
    pub(super) fn prune(&mut self, cutoff: Timestamp) -> bool {
        let before = self.entries.len();
        while self.entries.front().is_some_and(|e| e.item.time < cutoff) {
            self.entries.pop_front();
        }
        // Records of expired entries are found by nobody (`locate` misses them); they are
        // dropped once they reach the front, which keeps this amortised O(1).
        while self.late.front().is_some_and(|&(_, t)| t < cutoff) {
            self.late.pop_front();
        }
        self.entries.len() != before
    }

    /// How many late-arrival records are kept.
    #[cfg(test)]
    pub(super) fn late_len(&self) -> usize {
        self.late.len()
    }

    /// Forgets late-arrival records every reader has already passed.
    pub(super) fn trim_late(&mut self, min_cursor: u64) {
        while self.late.front().is_some_and(|&(a, _)| a <= min_cursor) {
            self.late.pop_front();
        }
        self.late_floor = self.late_floor.max(min_cursor);
    }

    /// Indices of the entries with `arrival > cursor`, ascending (so in time order). In
    /// the common case (no late arrival since `cursor`) that is a suffix of the entries,
    /// and nothing is allocated.
    pub(super) fn arrived_since(&self, cursor: u64) -> Arrived {
        if self.last_arrival <= cursor {
            return Arrived::default();
        }
        if cursor < self.late_floor {
            return Arrived {
                before: (0..self.entries.len())
                    .filter(|&i| self.entries[i].arrival > cursor)
                    .collect(),
                suffix: 0..0,
            };
        }
        let mut suffix = self.entries.len();
        while suffix > 0 && self.entries[suffix - 1].arrival > cursor {
            suffix -= 1;
        }
        let mut before: Vec<usize> = self
            .late
            .iter()
            .filter(|&&(a, _)| a > cursor)
            .filter_map(|&(a, t)| self.locate(a, t))
            .filter(|&i| i < suffix)
            .collect();
        before.sort_unstable();
        before.dedup();
        Arrived {
            before,
            suffix: suffix..self.entries.len(),
        }
    }

    fn locate(&self, arrival: u64, time: Timestamp) -> Option<usize> {
        let first = self.entries.partition_point(|e| e.item.time < time);
        (first..self.entries.len())
            .take_while(|&i| self.entries[i].item.time == time)
            .find(|&i| self.entries[i].arrival == arrival)
    }

    /// Index of the latest entry at or before `t`.
    pub(super) fn index_at(&self, t: Timestamp) -> Option<usize> {
        self.entries
            .partition_point(|e| e.item.time <= t)
            .checked_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(t: i64) -> Timestamped<i64> {
        Timestamped::new(Timestamp::from_nanos(t), t as u64, t)
    }

    fn times(s: &Store<i64>, idx: &Arrived) -> Vec<i64> {
        let out: Vec<i64> = idx.iter().map(|i| s.entries[i].item.value).collect();
        assert_eq!(out.len(), idx.len());
        assert_eq!(idx.last(), idx.iter().last());
        out
    }

    #[test]
    fn arrived_since_finds_suffix_and_late_entries() {
        let mut s = Store::new();
        for (a, t) in [(1, 10), (2, 20), (3, 30)] {
            s.push(a, item(t), true);
        }
        assert_eq!(times(&s, &s.arrived_since(0)), vec![10, 20, 30]);
        s.push(4, item(15), true);
        s.push(5, item(40), true);
        assert_eq!(times(&s, &s.arrived_since(3)), vec![15, 40]);
        assert_eq!(times(&s, &s.arrived_since(4)), vec![40]);
        assert_eq!(s.arrived_since(5).len(), 0);
        s.trim_late(5);
        s.push(6, item(5), true);
        assert_eq!(times(&s, &s.arrived_since(5)), vec![5]);
        // A cursor below the floor still sees everything after it, by a full scan.
        assert_eq!(times(&s, &s.arrived_since(2)), vec![5, 15, 30, 40]);
    }

    #[test]
    fn untracked_late_arrivals_are_found_by_full_scan() {
        let mut s = Store::new();
        s.push(1, item(10), false);
        s.push(2, item(30), false);
        s.push(3, item(20), false);
        assert!(s.late.is_empty());
        assert_eq!(times(&s, &s.arrived_since(0)), vec![10, 20, 30]);
        assert_eq!(times(&s, &s.arrived_since(1)), vec![20, 30]);
        s.push(4, item(5), true);
        assert_eq!(times(&s, &s.arrived_since(3)), vec![5]);
    }

    #[test]
    fn prune_drops_old_entries_and_late_records() {
        let mut s = Store::new();
        s.push(1, item(10), true);
        s.push(2, item(30), true);
        s.push(3, item(20), true);
        assert!(s.prune(Timestamp::from_nanos(25)));
        assert_eq!(s.entries.len(), 1);
        assert!(s.late.is_empty());
        assert_eq!(s.index_at(Timestamp::from_nanos(29)), None);
        assert_eq!(s.index_at(Timestamp::from_nanos(30)), Some(0));
    }
}
