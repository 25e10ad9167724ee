//! Property: any sequence of states (random timestamps, so out of order and edits at the same
//! timestamp; random values with many repeats; every dtype) sent through a sparse muxer,
//! the wire encoding and a demuxer leaves the receiver with exactly the states the source
//! holds, after every step; a receiver joining at the end does too.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::{
    CompressionPolicy, DType, Demuxer, MuxerConfig, SparseMuxer, Tensor, TensorSpec, Update,
};
use crate::time::Timestamp;

fn tensor(dtype: DType, values: &[u8]) -> Tensor {
    let size = dtype.size();
    let mut data = vec![0u8; values.len() * size];
    for (v, out) in values.iter().zip(data.chunks_exact_mut(size)) {
        dtype.write_f64(f64::from(*v), out);
    }
    Tensor::new(dtype, vec![values.len()], Bytes::from(data)).unwrap()
}

/// dtype, fill, merge gap in bytes (`None`: the framing rule), whether to try LZ4, and (timestamp, state) steps.
type Case = (DType, f64, Option<usize>, bool, Vec<(u8, Vec<u8>)>);

fn case() -> impl Strategy<Value = Case> {
    (
        0..DType::ALL.len(),
        1usize..40,
        0u8..3,
        0usize..4,
        any::<bool>(),
    )
        .prop_flat_map(|(d, len, fill, gap, lz4)| {
            let dtype = DType::ALL[d];
            let state = proptest::collection::vec(0u8..3, len);
            let ops = proptest::collection::vec((0u8..8, state), 1..30);
            (
                Just(dtype),
                Just(f64::from(fill)),
                Just(gap.checked_sub(1).map(|g| g * 8)),
                Just(lz4),
                ops,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_receiver_holds_exactly_what_the_source_holds((dtype, fill, gap, lz4, ops) in case()) {
        let len = ops[0].1.len();
        let spec = TensorSpec::flat(dtype, len, fill).unwrap();
        let config = MuxerConfig {
            merge_gap_bytes: gap,
            compression: if lz4 { CompressionPolicy::Auto { min_bytes: 0 } } else { CompressionPolicy::Never },
            ..MuxerConfig::default()
        };
        let mut source = SparseMuxer::with_config(spec.clone(), config);
        let mut receiver = Demuxer::new(spec);
        for (ts, values) in &ops {
            let ts = Timestamp::from_nanos(i64::from(*ts) * 1_000);
            let update = source.process(&tensor(dtype, values), ts).unwrap();
            let wire = Update::decode(&update.encode_to_vec()[..]).unwrap();
            let changed = receiver.apply(&wire).unwrap();
            for (t, v) in &changed {
                prop_assert_eq!(Some(v), source.get(*t), "reported change at {:?}", t);
            }
            let kept = source.timestamps();
            prop_assert!(receiver.timestamps().iter().all(|t| kept.contains(t)));
            for t in kept {
                prop_assert_eq!(Some(&receiver.state_at(t)), source.get(t), "state at {:?}", t);
            }
        }
        let late = Demuxer::from_initializer(&source.initializer()).unwrap();
        for t in source.timestamps() {
            prop_assert_eq!(Some(&late.state_at(t)), source.get(t), "late joiner at {:?}", t);
        }
    }
}
