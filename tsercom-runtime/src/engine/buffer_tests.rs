//! Unit tests of the send buffer: numbering, eviction gaps, lost ranges, limits.

use super::*;

fn p(n: u8) -> (Timestamp, Bytes) {
    (
        Timestamp::from_nanos(i64::from(n)),
        Bytes::from(vec![n; 10]),
    )
}

/// The gap `next` is: (first, last, first time, last time).
fn gap(next: Next) -> (u64, u64, Timestamp, Timestamp) {
    match next {
        Next::Gap {
            first,
            last,
            first_time,
            last_time,
        } => (first, last, first_time, last_time),
        other => panic!("expected a gap, got {other:?}"),
    }
}

fn seqs(next: Next) -> Vec<u64> {
    match next {
        Next::Samples(v) => v.iter().map(|s| s.seq).collect(),
        other => panic!("expected samples, got {other:?}"),
    }
}

#[test]
fn ranges_lost_upstream_are_gaps_in_their_place_until_released() {
    let b = SendBuffer::new(BufferLimits::default());
    let n = |seq: u64| {
        let (t, p) = p(seq as u8);
        (seq, t, p)
    };
    let t = Timestamp::from_nanos;
    assert_eq!(b.push_numbered([n(1), n(2)]), 2);
    b.push_lost(3, 5, t(30), t(50));
    // Below what was pushed: only the new part counts; a push under it is skipped.
    b.push_lost(4, 8, t(40), t(80));
    assert_eq!(b.push_numbered([n(7), n(9)]), 9);
    assert_eq!(b.last_seq(), 9);
    assert_eq!(seqs(b.next_after(0, 100, usize::MAX)), [1, 2]);
    assert_eq!(gap(b.next_after(2, 100, usize::MAX)), (3, 5, t(30), t(50)));
    // A reader inside a range is told about the rest of it.
    assert_eq!(gap(b.next_after(4, 100, usize::MAX)), (5, 5, t(30), t(50)));
    assert_eq!(gap(b.next_after(5, 100, usize::MAX)), (6, 8, t(40), t(80)));
    assert_eq!(seqs(b.next_after(8, 100, usize::MAX)), [9]);
    // Lost at the end, with nothing after it yet.
    b.push_lost(10, 12, t(100), t(120));
    assert_eq!(gap(b.next_after(9, 100, usize::MAX)).1, 12);
    assert!(matches!(b.next_after(12, 100, usize::MAX), Next::Empty));
    b.release_through(12);
    assert!(matches!(b.next_after(9, 100, usize::MAX), Next::Empty));
    assert_eq!(b.len(), 0);
    // A number the sender dropped (13) just before a lost range is counted in it: a
    // peer takes no gap that starts past its next number.
    b.push_lost(14, 15, t(140), t(150));
    assert_eq!(gap(b.next_after(12, 100, usize::MAX)).0, 13);
}

#[test]
fn numbered_samples_keep_their_numbers_holes_and_all() {
    let b = SendBuffer::new(BufferLimits::default());
    let n = |seq: u64| {
        let (t, p) = p(seq as u8);
        (seq, t, p)
    };
    assert_eq!(b.push_numbered([n(3), n(4), n(7)]), 7);
    // A resent copy (not above the last) is skipped; numbering goes on after it.
    assert_eq!(b.push_numbered([n(4), n(7), n(9)]), 9);
    assert!(b.numbered());
    assert_eq!(seqs(b.next_after(0, 100, usize::MAX)), [3, 4, 7, 9]);
    // Cursors inside a hole, and a peer that resumes ahead of what is held.
    assert_eq!(seqs(b.next_after(5, 100, usize::MAX)), [7, 9]);
    assert!(matches!(b.next_after(20, 100, usize::MAX), Next::Empty));
    assert_eq!(b.push_numbered([n(21)]), 21);
    assert_eq!(seqs(b.next_after(20, 100, usize::MAX)), [21]);
    b.release_through(7);
    assert_eq!(seqs(b.next_after(4, 100, usize::MAX)), [9, 21]);
    assert_eq!(b.len(), 2);
}

#[test]
fn readers_resume_after_their_cursor() {
    let b = SendBuffer::new(BufferLimits::default());
    assert_eq!(b.push_many((1..=5).map(p)), 5);
    assert_eq!(seqs(b.next_after(0, 100, 1 << 20)), vec![1, 2, 3, 4, 5]);
    assert_eq!(seqs(b.next_after(3, 100, 1 << 20)), vec![4, 5]);
    assert_eq!(seqs(b.next_after(0, 2, 1 << 20)), vec![1, 2]);
    assert!(matches!(b.next_after(5, 100, 1 << 20), Next::Empty));
    b.release_through(3);
    assert_eq!(seqs(b.next_after(3, 100, 1 << 20)), vec![4, 5]);
    assert!(matches!(b.next_after(9, 100, 1 << 20), Next::Empty));
}

#[test]
fn a_cursor_at_the_end_of_the_numbers_is_no_overflow() {
    let b = SendBuffer::new(BufferLimits::default());
    assert_eq!(b.push_many((1..=3).map(p)), 3);
    assert!(matches!(b.next_after(u64::MAX, 100, 1 << 20), Next::Empty));
    assert!(matches!(
        b.next_after(u64::MAX - 1, 100, 1 << 20),
        Next::Empty
    ));
    assert_eq!(seqs(b.next_after(0, 100, 1 << 20)), vec![1, 2, 3]);
}

#[test]
fn eviction_before_release_is_a_gap_with_exact_range() {
    let b = SendBuffer::new(BufferLimits {
        max_samples: 3,
        ..BufferLimits::default()
    });
    b.push_many((1..=7).map(p));
    assert_eq!(b.evicted(), 4);
    assert_eq!(
        gap(b.next_after(1, 100, 1 << 20)),
        (2, 4, Timestamp::from_nanos(1), Timestamp::from_nanos(4))
    );
    // After the gap the reader continues at the first held sample.
    assert_eq!(seqs(b.next_after(4, 100, 1 << 20)), vec![5, 6, 7]);
    // A reader that holds nothing (Ack 0) is told about the evicted samples too.
    let (first, last, ..) = gap(b.next_after(0, 100, 1 << 20));
    assert_eq!((first, last), (1, 4));
}

#[test]
fn released_samples_are_not_a_gap() {
    let b = SendBuffer::new(BufferLimits::default());
    b.push_many((1..=4).map(p));
    b.release_through(4);
    assert!(matches!(b.next_after(4, 10, 100), Next::Empty));
    assert_eq!(b.len(), 0);
}

#[test]
fn age_and_bytes_bound_the_buffer() {
    let b = SendBuffer::new(BufferLimits {
        max_bytes: 25,
        ..BufferLimits::default()
    });
    b.push_many((1..=4).map(p));
    assert_eq!(b.len(), 2);
    let b = SendBuffer::new(BufferLimits {
        max_age: Duration::from_nanos(5),
        ..BufferLimits::default()
    });
    b.push_many((1..=4).map(p));
    b.push_many(std::iter::once((Timestamp::from_nanos(8), Bytes::new())));
    assert_eq!(b.len(), 3, "samples at 3, 4 and 8 are within 5 ns of 8");
}

#[test]
fn forgotten_frames_are_a_gap_with_the_first_missing_time() {
    let b = SendBuffer::new(BufferLimits::default());
    b.push_many((1..=4).map(p));
    // Two frames handed to a best-effort connection: 1..=2, then 3..=4.
    b.forget_through(2);
    b.forget_through(4);
    assert_eq!(b.len(), 0);
    assert_eq!(b.evicted(), 0, "forgotten is not evicted");
    // Sent while no connection is up: evicted at once.
    b.push_many((5..=6).map(p));
    assert_eq!(b.evict_all(), 2);
    assert_eq!(b.evicted(), 2);
    // A reader that got 1..=2 missed 3..=6, and the times are exact.
    assert_eq!(
        gap(b.next_after(2, 100, 1 << 20)),
        (3, 6, Timestamp::from_nanos(3), Timestamp::from_nanos(6))
    );
    // A reader that got everything handed missed the evicted samples only.
    let (first, _, first_time, _) = gap(b.next_after(4, 100, 1 << 20));
    assert_eq!((first, first_time), (5, Timestamp::from_nanos(5)));
    assert!(matches!(b.next_after(6, 100, 1 << 20), Next::Empty));
}

/// A step of a relay's numbered buffer: samples pushed (`skip` numbers left out before
/// each), a range lost upstream, a reader taking up to `n` messages, or an
/// acknowledgement of what it read.
#[derive(Debug, Clone)]
enum Op {
    Push(Vec<u8>),
    Lost(u8),
    Read(u8),
    Release,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        proptest::collection::vec(0u8..3, 1..6).prop_map(Op::Push),
        (1u8..5).prop_map(Op::Lost),
        (1u8..4).prop_map(Op::Read),
        Just(Op::Release),
    ]
}

proptest::proptest! {
    /// Whatever the mix of pushes with holes, ranges lost upstream, reads and releases,
    /// a reader gets every pushed number once and in order, is told about every lost
    /// number in a gap, and each gap starts at its next number (as a peer requires);
    /// no number is both.
    #[test]
    fn a_reader_of_a_relay_gets_every_number_once_sample_or_gap(ops in proptest::collection::vec(op(), 1..40)) {
        let b = SendBuffer::new(BufferLimits::default());
        let mut next = 1u64;
        let (mut pushed, mut lost) = (Vec::new(), Vec::new());
        let (mut cursor, mut got, mut gapped) = (0u64, Vec::new(), Vec::new());
        let read = |b: &SendBuffer, cursor: &mut u64, got: &mut Vec<u64>, gapped: &mut Vec<u64>| {
            match b.next_after(*cursor, 3, usize::MAX) {
                Next::Samples(s) => {
                    for x in &s {
                        assert!(x.seq > *cursor, "{} after {cursor}", x.seq);
                        *cursor = x.seq;
                        got.push(x.seq);
                    }
                    true
                }
                Next::Gap { first, last, .. } => {
                    assert_eq!(first, *cursor + 1, "a gap starts at the next number");
                    gapped.extend(first..=last);
                    *cursor = last;
                    true
                }
                Next::Empty => false,
            }
        };
        for op in ops {
            match op {
                Op::Push(skips) => {
                    let items: Vec<_> = skips
                        .iter()
                        .map(|&skip| {
                            next += u64::from(skip);
                            pushed.push(next);
                            next += 1;
                            (next - 1, Timestamp::from_nanos(0), Bytes::from_static(b"x"))
                        })
                        .collect();
                    b.push_numbered(items);
                }
                Op::Lost(n) => {
                    let last = next + u64::from(n) - 1;
                    lost.extend(next..=last);
                    b.push_lost(next, last, Timestamp::from_nanos(0), Timestamp::from_nanos(0));
                    next = last + 1;
                }
                Op::Read(n) => {
                    for _ in 0..n {
                        read(&b, &mut cursor, &mut got, &mut gapped);
                    }
                }
                Op::Release => b.release_through(cursor),
            }
        }
        while read(&b, &mut cursor, &mut got, &mut gapped) {}
        proptest::prop_assert_eq!(&got, &pushed);
        for n in &lost {
            proptest::prop_assert!(gapped.contains(n), "lost {} not in a gap: {:?}", n, gapped);
        }
        for n in &got {
            proptest::prop_assert!(!gapped.contains(n), "{} both sent and in a gap", n);
        }
    }
}
