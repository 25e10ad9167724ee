//! The sequence numbers of a frame's new samples, as the aggregator records them held.

use crate::data::Timestamped;

/// The sequence numbers of a frame's new samples: a run of consecutive numbers (what a
/// source sends, so nothing is allocated per frame), or else the list.
pub(super) enum Seqs {
    Run(std::ops::RangeInclusive<u64>),
    List(Vec<u64>),
}

impl Seqs {
    pub(super) fn of<D>(items: &[Timestamped<D>]) -> Seqs {
        let consecutive = items
            .windows(2)
            .all(|w| w[0].seq.checked_add(1) == Some(w[1].seq));
        match (items.first(), items.last()) {
            (Some(first), Some(last)) if consecutive => Seqs::Run(first.seq..=last.seq),
            (None, _) | (_, None) => Seqs::List(Vec::new()),
            _ => Seqs::List(items.iter().map(|i| i.seq).collect()),
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (run, list) = match self {
            Seqs::Run(run) => (Some(run.clone()), None),
            Seqs::List(list) => (None, Some(list.iter().copied())),
        };
        run.into_iter().flatten().chain(list.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::Seqs;
    use crate::data::Timestamped;
    use crate::time::Timestamp;

    fn seqs(of: &[u64]) -> Vec<u64> {
        let items: Vec<_> = of
            .iter()
            .map(|&s| Timestamped::new(Timestamp::from_nanos(0), s, ()))
            .collect();
        let seqs = Seqs::of(&items);
        assert_eq!(
            matches!(seqs, Seqs::Run(_)),
            !of.is_empty() && of.windows(2).all(|w| w[0] + 1 == w[1])
        );
        seqs.iter().collect()
    }

    #[test]
    fn a_frames_sequence_numbers_are_kept_in_order_run_or_not() {
        for of in [
            &[][..],
            &[7],
            &[3, 4, 5],
            &[3, 5, 4],
            &[1, 2, 9, 10],
            &[u64::MAX],
        ] {
            assert_eq!(seqs(of), of);
        }
    }
}
