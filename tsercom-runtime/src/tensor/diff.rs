//! Element-level helpers shared by the muxers and the demuxer: changed runs, run merging,
//! and a bit set of explicitly written elements.

use std::ops::Range;

use super::chunk::chunk_len_in_update;
use crate::time::Timestamp;

/// Bytes compared at once before looking at single elements (a multiple of every element
/// size).
const BLOCK: usize = 256;

/// The runs of elements (of `size` bytes) that differ between `a` and `b` (same length),
/// in order, each as a range of element indices.
pub(crate) fn changed_runs(a: &[u8], b: &[u8], size: usize) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    while at < a.len() {
        let end = (at + BLOCK).min(a.len());
        if a[at..end] != b[at..end] {
            for e in at / size..end / size {
                let r = e * size..(e + 1) * size;
                if a[r.clone()] != b[r] {
                    push_index(&mut runs, e);
                }
            }
        }
        at = end;
    }
    runs
}

/// Appends element `e` (not below any index already in `runs`).
pub(crate) fn push_index(runs: &mut Vec<Range<usize>>, e: usize) {
    match runs.last_mut() {
        Some(last) if last.end == e => last.end = e + 1,
        _ => runs.push(e..e + 1),
    }
}

/// How nearby changed runs are joined into one chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Joining {
    /// Runs at most this many elements apart.
    Gap(usize),
    /// Runs whose gap costs fewer bytes than the framing of another chunk (exact sizes of
    /// uncompressed chunks at `timestamp` of `size`-byte elements).
    Framing {
        /// The chunks' timestamp.
        timestamp: Timestamp,
        /// The element size.
        size: usize,
    },
}

/// Joins runs as `joining` says (sending a few unchanged elements is cheaper than the
/// framing of another chunk). Greedy, left to right: each run joins the chunk before it
/// when that makes the update smaller.
pub(crate) fn merge_runs(runs: Vec<Range<usize>>, joining: Joining) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::with_capacity(runs.len());
    for r in runs {
        let join = match (out.last(), joining) {
            (None, _) => false,
            (Some(last), Joining::Gap(gap)) => r.start <= last.end.saturating_add(gap),
            (Some(last), Joining::Framing { timestamp, size }) => {
                let len = |r: &Range<usize>| {
                    chunk_len_in_update(timestamp, r.start, (r.end - r.start).saturating_mul(size))
                };
                len(&(last.start..r.end)) < len(last) + len(&r)
            }
        };
        match out.last_mut() {
            Some(last) if join => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}

/// One bit per element: which elements a timestamp's chunks wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub(crate) fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    pub(crate) fn set_range(&mut self, r: Range<usize>) {
        for i in r {
            self.0[i / 64] |= 1 << (i % 64);
        }
    }

    /// The runs of set bits.
    pub(crate) fn runs(&self, len: usize) -> Vec<Range<usize>> {
        let mut runs = Vec::new();
        for (w, word) in self.0.iter().enumerate() {
            if *word == 0 {
                continue;
            }
            for b in 0..64 {
                let i = w * 64 + b;
                if i < len && word & (1 << b) != 0 {
                    push_index(&mut runs, i);
                }
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_changed_elements() {
        let a: Vec<u8> = (0..2000u32)
            .flat_map(|i| (i as f32).to_le_bytes())
            .collect();
        let mut b = a.clone();
        for e in [0usize, 1, 2, 70, 71, 499] {
            b[e * 4] ^= 1;
        }
        assert_eq!(changed_runs(&a, &b, 4), vec![0..3, 70..72, 499..500]);
        assert_eq!(changed_runs(&a, &a, 4), vec![]);
        assert_eq!(
            merge_runs(vec![0..3, 5..6, 70..72], Joining::Gap(2)),
            vec![0..6, 70..72]
        );
        let mut bits = Bits::new(130);
        bits.set_range(62..66);
        bits.set_range(129..130);
        assert!(bits.get(63) && bits.get(64) && !bits.get(66));
        assert_eq!(bits.runs(130), vec![62..66, 129..130]);
    }

    #[test]
    fn runs_join_exactly_when_the_gap_costs_less_than_a_chunk() {
        use bytes::Bytes;
        use prost::Message;

        use crate::tensor::{Chunk, CompressionPolicy, Update};

        let timestamp = Timestamp::from_nanos(1_700_000_000_123_456_789);
        let size = 4;
        let joining = Joining::Framing { timestamp, size };
        let update = |runs: &[Range<usize>]| {
            let chunks = runs
                .iter()
                .map(|r| {
                    let data = Bytes::from(vec![7u8; (r.end - r.start) * size]);
                    Chunk::encode(timestamp, r.start, data, CompressionPolicy::Never)
                })
                .collect();
            Update { chunks }.encoded_len()
        };
        // Two single elements at 5000 and 5001 + gap: joined while that is smaller.
        let mut joined_any = false;
        for gap in 0..40 {
            let runs = vec![5000..5001, 5001 + gap..5002 + gap];
            let merged = merge_runs(runs.clone(), joining);
            let apart = update(&runs);
            let together = update(std::slice::from_ref(&(5000..5002 + gap)));
            assert_eq!(merged.len() == 1, together < apart, "gap {gap}");
            assert!(update(&merged) <= apart);
            joined_any |= gap > 0 && merged.len() == 1;
        }
        assert!(
            joined_any,
            "a few unchanged elements are cheaper than a chunk"
        );
        // Far apart: kept apart.
        assert_eq!(
            merge_runs(vec![0..1, 1000..1001], joining),
            vec![0..1, 1000..1001]
        );
    }
}
