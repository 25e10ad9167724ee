//! [`AggregateMuxer`]: several publishers, each owning a range of one flat index space.

use std::ops::Range;

use super::{DType, MuxerConfig, SparseMuxer, Tensor, TensorError, TensorSpec, Update};
use crate::time::Timestamp;
use crate::wire;

/// One publisher's slot in an [`AggregateMuxer`]: its range of the combined tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherSlot {
    index: usize,
    range: Range<usize>,
}

impl PublisherSlot {
    /// The elements of the combined tensor it owns.
    pub fn range(&self) -> Range<usize> {
        self.range.clone()
    }
}

/// Lays several publishers' tensors out in one flat tensor (each at its own range; ranges
/// may not overlap) and streams the combination as sparse updates. Each publisher's states
/// go through its own [`SparseMuxer`]; chunks are shifted to the publisher's range, so one
/// [`Demuxer`](super::Demuxer) of [`spec`](Self::spec) rebuilds the combination.
#[derive(Debug, Clone)]
pub struct AggregateMuxer {
    dtype: DType,
    fill: f64,
    config: MuxerConfig,
    publishers: Vec<(Range<usize>, SparseMuxer)>,
}

impl AggregateMuxer {
    /// An aggregate of `dtype` elements starting at `fill`, with no publishers yet.
    pub fn new(dtype: DType, fill: f64, config: MuxerConfig) -> Self {
        AggregateMuxer {
            dtype,
            fill,
            config,
            publishers: Vec::new(),
        }
    }

    /// Adds a publisher owning `range`. Fails if it overlaps another's (or is too large).
    pub fn add_publisher(&mut self, range: Range<usize>) -> Result<PublisherSlot, TensorError> {
        if let Some((other, _)) = self
            .publishers
            .iter()
            .find(|(r, _)| range.start < r.end && r.start < range.end)
        {
            return Err(TensorError::Overlap {
                start: range.start,
                end: range.end,
                other_start: other.start,
                other_end: other.end,
            });
        }
        let len = range.end.saturating_sub(range.start);
        let spec = TensorSpec::flat(self.dtype, len, self.fill)?;
        TensorSpec::flat(self.dtype, range.end, self.fill)?;
        let muxer = SparseMuxer::with_config(spec, self.config);
        self.publishers.push((range.clone(), muxer));
        Ok(PublisherSlot {
            index: self.publishers.len() - 1,
            range,
        })
    }

    /// The combined tensor: flat, up to the end of the last range (elements no publisher
    /// owns stay at the fill value).
    pub fn spec(&self) -> TensorSpec {
        let len = self
            .publishers
            .iter()
            .map(|(r, _)| r.end)
            .max()
            .unwrap_or(0);
        TensorSpec {
            dtype: self.dtype,
            shape: vec![len],
            fill: self.fill,
        }
    }

    /// Records `tensor` (of the publisher's range length) as the publisher's state at `ts`
    /// and returns the chunks for the combined tensor.
    pub fn process(
        &mut self,
        publisher: &PublisherSlot,
        tensor: &Tensor,
        ts: Timestamp,
    ) -> Result<Update, TensorError> {
        let (range, muxer) = self
            .publishers
            .get_mut(publisher.index)
            .filter(|(r, _)| *r == publisher.range)
            .ok_or(TensorError::UnknownPublisher)?;
        let flat = tensor.clone().reshape(vec![tensor.len()])?;
        let mut update = muxer.process(&flat, ts)?;
        shift(&mut update, range.start);
        Ok(update)
    }

    /// What a receiver that joins now needs (see [`SparseMuxer::initializer`]).
    pub fn initializer(&self) -> wire::TensorInitializer {
        let mut all = Update::default();
        for (range, muxer) in &self.publishers {
            let init = muxer.initializer();
            if let Some(Ok(mut u)) = init.initial_state.as_ref().map(Update::from_wire) {
                shift(&mut u, range.start);
                all.chunks.extend(u.chunks);
            }
        }
        self.spec().to_initializer(&all)
    }
}

fn shift(update: &mut Update, by: usize) {
    let by = i64::try_from(by).unwrap_or(i64::MAX);
    for c in &mut update.chunks {
        c.starting_index = c.starting_index.saturating_add(by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Demuxer;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_nanos(s * 1_000_000_000)
    }

    #[test]
    fn publishers_share_one_index_space() {
        let config = MuxerConfig {
            merge_gap_bytes: Some(0),
            ..MuxerConfig::default()
        };
        let mut agg = AggregateMuxer::new(DType::F32, 0.0, config);
        let a = agg.add_publisher(0..3).unwrap();
        let b = agg.add_publisher(5..7).unwrap();
        assert!(matches!(
            agg.add_publisher(2..6),
            Err(TensorError::Overlap {
                start: 2,
                end: 6,
                other_start: 0,
                other_end: 3
            })
        ));
        assert_eq!(agg.spec().shape, [7]);
        let mut rx = Demuxer::new(agg.spec());
        let ua = agg
            .process(
                &a,
                &Tensor::from_vec(vec![3], vec![1.0f32, 0.0, 2.0]).unwrap(),
                ts(1),
            )
            .unwrap();
        let starts: Vec<i64> = ua.chunks.iter().map(|c| c.starting_index).collect();
        assert_eq!(starts, [0, 2]);
        rx.apply(&ua).unwrap();
        let ub = agg
            .process(
                &b,
                &Tensor::from_vec(vec![2], vec![5.0f32, 6.0]).unwrap(),
                ts(2),
            )
            .unwrap();
        assert_eq!(ub.chunks[0].starting_index, 5);
        let out = rx.apply(&ub).unwrap();
        assert_eq!(
            out[0].1.to_vec::<f32>().unwrap(),
            [1.0, 0.0, 2.0, 0.0, 0.0, 5.0, 6.0]
        );
        // A late state of `a` before b's timestamp cascades into it.
        let ua0 = agg
            .process(
                &a,
                &Tensor::from_vec(vec![3], vec![1.0f32, 9.0, 2.0]).unwrap(),
                ts(1),
            )
            .unwrap();
        let out = rx.apply(&ua0).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].1.to_vec::<f32>().unwrap(),
            [1.0, 9.0, 2.0, 0.0, 0.0, 5.0, 6.0]
        );
        // A late joiner rebuilds the same.
        let late = Demuxer::from_initializer(&agg.initializer()).unwrap();
        assert_eq!(late.get(ts(2)), rx.get(ts(2)));
        // Wrong length for the publisher.
        let wrong = agg.process(
            &b,
            &Tensor::from_vec(vec![3], vec![0.0f32; 3]).unwrap(),
            ts(3),
        );
        assert!(matches!(
            wrong,
            Err(TensorError::Length {
                expected: 2,
                got: 3
            })
        ));
        let stranger = AggregateMuxer::new(DType::F32, 0.0, config)
            .add_publisher(0..2)
            .unwrap();
        let mut other = AggregateMuxer::new(DType::F32, 0.0, config);
        assert_eq!(
            other.process(
                &stranger,
                &Tensor::from_vec(vec![2], vec![0.0f32; 2]).unwrap(),
                ts(1)
            ),
            Err(TensorError::UnknownPublisher)
        );
    }
}
