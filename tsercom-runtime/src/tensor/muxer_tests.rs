//! The reference's `sparse_tensor_multiplexer_unittest.py` cases, ported where they still
//! hold (with `merge_gap_bytes: Some(0)`, the reference's strictly contiguous chunks), and the
//! cases whose output changed by design, with the new output and why.

use std::time::Duration;

use super::*;
use crate::tensor::{Compression, DType, Demuxer};

/// The reference's T0..T4: T_BASE - 30 s, -20 s, -10 s, T_BASE, T_BASE + 10 s.
fn t(i: i64) -> Timestamp {
    let base = 1_672_574_400i64; // 2023-01-01 12:00:00 UTC
    Timestamp::from_nanos((base + (i - 3) * 10) * 1_000_000_000)
}

fn f32s(v: &[f32]) -> Tensor {
    Tensor::from_slice(vec![v.len()], v).unwrap()
}

fn exact() -> MuxerConfig {
    MuxerConfig {
        merge_gap_bytes: Some(0),
        ..MuxerConfig::default()
    }
}

fn mux() -> SparseMuxer {
    SparseMuxer::with_config(TensorSpec::flat(DType::F32, 5, 0.0).unwrap(), exact())
}

/// (timestamp index, starting index, values) of every chunk.
fn chunks(u: &Update) -> Vec<(Timestamp, i64, Vec<f32>)> {
    u.chunks
        .iter()
        .map(|c| {
            assert_eq!(c.compression, Compression::None);
            let v = c
                .data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (c.timestamp, c.starting_index, v)
        })
        .collect()
}

#[test]
fn process_first_tensor() {
    let mut m = mux();
    let u = m.process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(1)).unwrap();
    assert_eq!(chunks(&u), [(t(1), 0, vec![1.0, 2.0, 3.0, 4.0, 5.0])]);
}

#[test]
fn simple_update_scenario1() {
    let mut m = mux();
    m.process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(1)).unwrap();
    let u = m
        .process(&f32s(&[1.0, 2.0, 99.0, 4.0, 88.0]), t(2))
        .unwrap();
    assert_eq!(chunks(&u), [(t(2), 2, vec![99.0]), (t(2), 4, vec![88.0])]);
}

#[test]
fn nearby_changes_share_a_chunk_by_default() {
    let mut m = SparseMuxer::new(TensorSpec::flat(DType::F32, 5, 0.0).unwrap());
    m.process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(1)).unwrap();
    let u = m
        .process(&f32s(&[1.0, 2.0, 99.0, 4.0, 88.0]), t(2))
        .unwrap();
    assert_eq!(chunks(&u), [(t(2), 2, vec![99.0, 4.0, 88.0])]);
}

#[test]
fn process_identical_tensor() {
    let mut m = mux();
    m.process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(1)).unwrap();
    assert!(m
        .process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(2))
        .unwrap()
        .is_empty());
    assert!(m
        .process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(1))
        .unwrap()
        .is_empty());
}

/// Reference: the edit was diffed against the state *before* T1 (zeros), re-sending index 0.
/// Now it is diffed against T1's previous state: only what changed travels.
#[test]
fn update_at_same_timestamp_different_data() {
    let mut m = mux();
    m.process(&f32s(&[1.0, 0.0, 0.0, 0.0, 0.0]), t(1)).unwrap();
    let u = m.process(&f32s(&[1.0, 9.0, 0.0, 8.0, 0.0]), t(1)).unwrap();
    assert_eq!(chunks(&u), [(t(1), 1, vec![9.0]), (t(1), 3, vec![8.0])]);
}

/// The reference's divergence bug: an edit at the same timestamp back to the predecessor's
/// value produced no chunk (equal to the predecessor), and the receiver kept 9 and 8.
#[test]
fn same_timestamp_edit_back_to_predecessor_value_converges() {
    let mut m = mux();
    let mut rx = Demuxer::new(m.spec().clone());
    rx.apply(&m.process(&f32s(&[1.0, 9.0, 0.0, 8.0, 0.0]), t(1)).unwrap())
        .unwrap();
    let u = m.process(&f32s(&[1.0, 0.0, 0.0, 0.0, 0.0]), t(1)).unwrap();
    assert_eq!(chunks(&u), [(t(1), 1, vec![0.0]), (t(1), 3, vec![0.0])]);
    let out = rx.apply(&u).unwrap();
    assert_eq!(out, [(t(1), f32s(&[1.0, 0.0, 0.0, 0.0, 0.0]))]);
}

/// Reference: T2 was re-diffed against the late T1 and re-sent. T2's own chunks already
/// wrote every element, so the receiver's T2 cannot change: nothing is re-sent.
#[test]
fn out_of_order_update_scenario2_full_cascade() {
    let mut m = mux();
    m.process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(2)).unwrap();
    let u = m.process(&f32s(&[1.0, 4.0, 4.0, 4.0, 4.0]), t(1)).unwrap();
    assert_eq!(chunks(&u), [(t(1), 0, vec![1.0, 4.0, 4.0, 4.0, 4.0])]);
}

/// When the successor did not write an element the late state changed, it is re-sent at
/// the successor, and the cascade stops there.
#[test]
fn out_of_order_insert_resends_only_at_the_successor() {
    let mut m = mux();
    let mut rx = Demuxer::new(m.spec().clone());
    rx.apply(&m.process(&f32s(&[0.0, 2.0, 3.0, 0.0, 5.0]), t(2)).unwrap())
        .unwrap();
    rx.apply(&m.process(&f32s(&[0.0, 2.0, 3.0, 0.0, 6.0]), t(3)).unwrap())
        .unwrap();
    rx.apply(&m.process(&f32s(&[0.0, 2.0, 3.0, 0.0, 7.0]), t(4)).unwrap())
        .unwrap();
    let u = m.process(&f32s(&[1.0, 4.0, 4.0, 4.0, 4.0]), t(1)).unwrap();
    assert_eq!(
        chunks(&u),
        [
            (t(1), 0, vec![1.0, 4.0, 4.0, 4.0, 4.0]),
            (t(2), 0, vec![0.0]),
            (t(2), 3, vec![0.0])
        ]
    );
    let out = rx.apply(&u).unwrap();
    let stamps: Vec<Timestamp> = out.iter().map(|(ts, _)| *ts).collect();
    assert_eq!(stamps, [t(1)], "t2..t4 end up unchanged");
    for i in 1..=4 {
        assert_eq!(rx.get(t(i)).as_ref(), m.get(t(i)));
    }
}

#[test]
fn data_timeout_simple() {
    let config = MuxerConfig {
        history: Duration::from_millis(100),
        ..exact()
    };
    let mut m = SparseMuxer::with_config(TensorSpec::flat(DType::F32, 5, 0.0).unwrap(), config);
    m.process(&f32s(&[1.0; 5]), t(0)).unwrap();
    let u = m.process(&f32s(&[2.0; 5]), t(2)).unwrap();
    assert_eq!(chunks(&u), [(t(2), 0, vec![2.0; 5])]);
    assert_eq!(m.timestamps(), [t(2)]);
    // Older than the kept history: refused, not silently diffed against the wrong base.
    let stale = m.process(&f32s(&[3.0; 5]), t(1));
    assert!(matches!(stale, Err(TensorError::Stale { .. })));
}

#[test]
fn history_is_bounded_in_count() {
    let config = MuxerConfig {
        max_history: 3,
        ..exact()
    };
    let mut m = SparseMuxer::with_config(TensorSpec::flat(DType::F32, 1, 0.0).unwrap(), config);
    for i in 0..10 {
        m.process(
            &f32s(&[i as f32]),
            t(0).saturating_add(Duration::from_millis(i)),
        )
        .unwrap();
    }
    assert_eq!(m.timestamps().len(), 3);
}

#[test]
fn input_tensor_wrong_length() {
    let mut m = mux();
    let err = m.process(&f32s(&[1.0, 2.0]), t(1)).unwrap_err();
    assert_eq!(
        err,
        TensorError::Length {
            expected: 5,
            got: 2
        }
    );
    let ints = Tensor::from_vec(vec![5], vec![0i32; 5]).unwrap();
    assert!(matches!(
        m.process(&ints, t(1)),
        Err(TensorError::DTypeMismatch {
            expected: DType::F32,
            got: DType::I32
        })
    ));
}

#[test]
fn get_tensor_at_timestamp() {
    let mut m = mux();
    m.process(&f32s(&[1.0, 2.0, 0.0, 0.0, 5.0]), t(1)).unwrap();
    m.process(&f32s(&[0.0, 7.0, 8.0, 0.0, 0.0]), t(2)).unwrap();
    assert_eq!(m.get(t(1)), Some(&f32s(&[1.0, 2.0, 0.0, 0.0, 5.0])));
    assert_eq!(m.get(t(2)), Some(&f32s(&[0.0, 7.0, 8.0, 0.0, 0.0])));
    assert_eq!(m.get(t(0)), None);
}

#[test]
fn contiguous_and_non_contiguous_changes() {
    let mut m = mux();
    m.process(&f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]), t(1)).unwrap();
    let u = m
        .process(&f32s(&[10.0, 2.0, 30.0, 40.0, 5.0]), t(2))
        .unwrap();
    assert_eq!(
        chunks(&u),
        [(t(2), 0, vec![10.0]), (t(2), 2, vec![30.0, 40.0])]
    );
}

#[test]
fn complete_muxer_sends_everything_and_compresses_when_it_pays() {
    let spec = TensorSpec::flat(DType::F32, 1024, 0.0).unwrap();
    let mut m = CompleteMuxer::new(spec.clone());
    let zeros = Tensor::full(DType::F32, vec![1024], 0.0).unwrap();
    let u = m.process(&zeros, t(1)).unwrap();
    assert_eq!(u.chunks.len(), 1);
    assert_eq!(u.chunks[0].compression, Compression::Lz4);
    let mut rx = Demuxer::new(spec.clone());
    assert_eq!(rx.apply(&u).unwrap(), [(t(1), zeros.clone())]);
    let mut plain = CompleteMuxer::new(spec).compression(CompressionPolicy::Never);
    let u = plain.process(&zeros, t(2)).unwrap();
    assert_eq!(u.chunks[0].compression, Compression::None);
    assert_eq!(
        u.chunks[0].data,
        *zeros.as_bytes(),
        "shares the tensor's bytes"
    );
}

#[test]
fn a_late_joiner_rebuilds_every_kept_state() {
    let mut m = mux();
    m.process(&f32s(&[0.0, 2.0, 3.0, 0.0, 5.0]), t(2)).unwrap();
    m.process(&f32s(&[1.0, 4.0, 4.0, 4.0, 4.0]), t(1)).unwrap();
    m.process(&f32s(&[1.0, 4.0, 0.0, 4.0, 4.0]), t(3)).unwrap();
    let rx = Demuxer::from_initializer(&m.initializer()).unwrap();
    for i in 1..=3 {
        assert_eq!(rx.get(t(i)).as_ref(), m.get(t(i)), "t{i}");
    }
}
