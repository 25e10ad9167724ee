//! What an aggregator holds of one source's numbering, to drop duplicates and recognise
//! samples announced lost that arrive late.

use std::collections::VecDeque;

/// Ranges announced lost kept per source, for recognising late arrivals (16 bytes each).
const MISSING_RANGES: usize = 1024;

/// What the aggregator holds of one source's numbering: the last sequence number, and
/// the ranges before it that were announced lost and have not arrived.
#[derive(Debug, Default, Clone)]
pub(super) struct Ledger {
    pub(super) last: u64,
    /// Disjoint, ascending, all below `last`; the oldest are forgotten beyond
    /// `MISSING_RANGES` (their samples then count as duplicates if they ever arrive).
    missing: VecDeque<(u64, u64)>,
}

/// How a received sample relates to what is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// After the last one held.
    New,
    /// Announced lost, and here after all.
    Recovered,
    /// Already held.
    Duplicate,
}

impl Ledger {
    pub(super) fn admit(&mut self, seq: u64) -> Admit {
        if seq > self.last {
            self.last = seq;
            return Admit::New;
        }
        let idx = self.missing.partition_point(|&(_, last)| last < seq);
        match self.missing.get(idx).copied() {
            Some((first, last)) if first <= seq => {
                match (first == seq, last == seq) {
                    (true, true) => {
                        self.missing.remove(idx);
                    }
                    (true, false) => self.missing[idx].0 = seq + 1,
                    (false, true) => self.missing[idx].1 = seq - 1,
                    (false, false) => {
                        self.missing[idx].1 = seq - 1;
                        self.missing.insert(idx + 1, (seq + 1, last));
                        if self.missing.len() > MISSING_RANGES {
                            self.missing.pop_front();
                        }
                    }
                }
                Admit::Recovered
            }
            _ => Admit::Duplicate,
        }
    }

    /// Takes a Gap announcement; returns the part of it not already held.
    pub(super) fn announce(&mut self, first: u64, last: u64) -> Option<(u64, u64)> {
        if first > last || last <= self.last {
            return None;
        }
        let first = first.max(self.last.saturating_add(1));
        if self.missing.len() == MISSING_RANGES {
            self.missing.pop_front();
        }
        self.missing.push_back((first, last));
        self.last = last;
        Some((first, last))
    }

    /// A new incarnation of the source: its numbering starts over.
    pub(super) fn restart(&mut self) {
        self.last = 0;
        self.missing.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::{Admit, Ledger, MISSING_RANGES};

    #[test]
    fn samples_announced_lost_are_recovered_once_when_they_arrive_late() {
        let mut l = Ledger::default();
        assert_eq!(l.admit(1), Admit::New);
        assert_eq!(l.admit(2), Admit::New);
        // The source announces 3..=10 lost (evicted while a copy was in flight on an
        // older connection), then resumes at 11.
        assert_eq!(l.announce(1, 10), Some((3, 10)));
        assert_eq!(l.admit(11), Admit::New);
        assert_eq!(l.admit(2), Admit::Duplicate);
        // The late copies arrive: each is recovered once, in any order.
        assert_eq!(l.admit(3), Admit::Recovered);
        assert_eq!(l.admit(3), Admit::Duplicate);
        assert_eq!(l.admit(7), Admit::Recovered);
        assert_eq!(l.admit(10), Admit::Recovered);
        assert_eq!(
            l.missing.iter().copied().collect::<Vec<_>>(),
            [(4, 6), (8, 9)]
        );
        for seq in [4, 5, 6, 8, 9] {
            assert_eq!(l.admit(seq), Admit::Recovered);
        }
        assert!(l.missing.is_empty());
        assert_eq!(l.admit(9), Admit::Duplicate);
        // An announcement of what is already held changes nothing.
        assert_eq!(l.announce(5, 11), None);
        l.restart();
        assert_eq!(l.admit(1), Admit::New);
    }

    #[test]
    fn missing_ranges_are_bounded() {
        let mut l = Ledger::default();
        for i in 0..(MISSING_RANGES as u64 + 10) {
            l.announce(2 * i + 1, 2 * i + 1);
            l.admit(2 * i + 2);
        }
        assert_eq!(l.missing.len(), MISSING_RANGES);
        // The oldest were forgotten: a very late copy is a duplicate.
        assert_eq!(l.admit(1), Admit::Duplicate);
        assert_eq!(l.admit(2 * MISSING_RANGES as u64 + 19), Admit::Recovered);
    }
}
