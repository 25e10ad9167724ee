//! Receiver side: [`Demuxer`] rebuilds the full tensor at every timestamp from chunks.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::diff::{changed_runs, push_index, Bits};
use super::muxer::Window;
use super::{MuxerConfig, Tensor, TensorError, TensorSpec, Update};
use crate::time::Timestamp;
use crate::wire;

/// Counters of a [`Demuxer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxerStats {
    /// Updates applied.
    pub updates: u64,
    /// Chunks applied.
    pub chunks: u64,
    /// Updates rejected as a whole (a chunk past the end, a wrong byte count, corrupt LZ4,
    /// an unknown compression type): nothing of them was applied.
    pub rejected: u64,
    /// Chunks dropped because their timestamp is older than the kept history.
    pub stale: u64,
}

/// A tensor and its timestamp.
type Stamped = (Timestamp, Tensor);

#[derive(Debug, Clone)]
struct Frame {
    ts: Timestamp,
    /// Shared with the tensors handed out for this timestamp (no copy); a write while one
    /// is still held copies first ([`Arc::make_mut`]).
    data: Arc<Vec<u8>>,
    written: Bits,
}

/// A frame's element bytes as the owner of a [`Bytes`].
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Rebuilds the tensor at every timestamp from [`Update`]s: the tensor at `T` is the tensor
/// at the timestamp before `T` (or the fill value) with the elements `T`'s chunks wrote.
///
/// [`apply`](Self::apply) returns every `(timestamp, tensor)` an update changed, in the
/// source's dtype and shape, oldest first. A change at `T` cascades to later timestamps for
/// the elements they did not write, and stops at the first one it does not change.
#[derive(Debug, Clone)]
pub struct Demuxer {
    spec: TensorSpec,
    config: MuxerConfig,
    fill: Vec<u8>,
    frames: Vec<Frame>,
    window: Window,
    stats: DemuxerStats,
}

impl Demuxer {
    /// A demuxer for `spec`, keeping the default history (60 s, 64 timestamps).
    pub fn new(spec: TensorSpec) -> Self {
        Self::with_config(spec, MuxerConfig::default())
    }

    /// A demuxer keeping `config.history` and `config.max_history` (keep at least as much
    /// as the source's muxer, so every edit it can still send finds its timestamp).
    pub fn with_config(spec: TensorSpec, config: MuxerConfig) -> Self {
        Demuxer {
            fill: spec.fill_bytes(),
            spec,
            config,
            frames: Vec::new(),
            window: Window::default(),
            stats: DemuxerStats::default(),
        }
    }

    /// A demuxer from a peer's `TensorInitializer`, with its initial state applied and the
    /// default [`MuxerConfig`] (so a tensor over 64 MiB is refused; see
    /// [`from_initializer_with`](Self::from_initializer_with)).
    pub fn from_initializer(init: &wire::TensorInitializer) -> Result<Self, TensorError> {
        Self::from_initializer_with(init, MuxerConfig::default())
    }

    /// A demuxer from a peer's `TensorInitializer` with `config`. A shape whose tensor is
    /// larger than `config.max_tensor_bytes` is [`TensorError::TooLarge`], before any memory
    /// is allocated for it.
    pub fn from_initializer_with(
        init: &wire::TensorInitializer,
        config: MuxerConfig,
    ) -> Result<Self, TensorError> {
        let (spec, update) = TensorSpec::from_initializer(init)?;
        let bytes = spec.len().saturating_mul(spec.dtype.size());
        if bytes > config.max_tensor_bytes {
            return Err(TensorError::TooLarge(bytes as u128));
        }
        let mut d = Demuxer::with_config(spec, config);
        d.apply(&update)?;
        Ok(d)
    }

    /// The spec.
    pub fn spec(&self) -> &TensorSpec {
        &self.spec
    }

    /// The counters.
    pub fn stats(&self) -> DemuxerStats {
        self.stats
    }

    /// Applies `update` as a whole and returns the tensors it changed, oldest first. A bad
    /// chunk rejects the whole update (nothing is applied, [`DemuxerStats::rejected`]
    /// counts it) and the demuxer goes on with the next.
    pub fn apply(&mut self, update: &Update) -> Result<Vec<(Timestamp, Tensor)>, TensorError> {
        let len = self.spec.len();
        let mut decoded: Vec<(Timestamp, usize, Bytes)> = Vec::with_capacity(update.chunks.len());
        for c in &update.chunks {
            match c.elements(self.spec.dtype, len) {
                Ok((start, bytes)) => decoded.push((c.timestamp, start, bytes)),
                Err(e) => {
                    self.stats.rejected += 1;
                    tracing::debug!(error = %e, "tensor update rejected");
                    return Err(e);
                }
            }
        }
        // Newest first: a late timestamp's own writes are in place before an earlier change
        // cascades into it, so a cascade stops at the first timestamp it does not change and
        // nothing changes back and forth. (The final states do not depend on the order.)
        decoded.sort_by_key(|c| std::cmp::Reverse(c.0));
        let mut changed: BTreeSet<Timestamp> = BTreeSet::new();
        for (ts, start, bytes) in decoded {
            if self.window.check(ts, self.config.history).is_err() {
                self.stats.stale += 1;
                continue;
            }
            self.write(ts, start, &bytes, &mut changed);
            self.window.saw(ts);
            self.stats.chunks += 1;
        }
        self.stats.updates += 1;
        let stamps: Vec<Timestamp> = self.frames.iter().map(|f| f.ts).collect();
        let drop = self.window.prune(&stamps, &self.config);
        self.frames.drain(..drop);
        Ok(changed
            .into_iter()
            .filter_map(|ts| self.get(ts).map(|t| (ts, t)))
            .collect())
    }

    fn write(
        &mut self,
        ts: Timestamp,
        start: usize,
        bytes: &[u8],
        changed: &mut BTreeSet<Timestamp>,
    ) {
        let size = self.spec.dtype.size();
        let mut pos = self.frames.partition_point(|f| f.ts < ts);
        if self.frames.get(pos).is_none_or(|f| f.ts != ts) {
            let data = pos
                .checked_sub(1)
                .map_or_else(|| self.fill.clone(), |p| self.frames[p].data.to_vec());
            let written = Bits::new(self.spec.len());
            let data = Arc::new(data);
            self.frames.insert(pos, Frame { ts, data, written });
            changed.insert(ts);
        }
        let end = start + bytes.len() / size;
        let frame = &mut self.frames[pos];
        let at = start * size..end * size;
        let mut diff = changed_runs(&frame.data[at.clone()], bytes, size);
        if !diff.is_empty() {
            let data = Arc::make_mut(&mut frame.data);
            for r in &mut diff {
                let b = r.start * size..r.end * size;
                data[at.start + b.start..at.start + b.end].copy_from_slice(&bytes[b]);
                *r = start + r.start..start + r.end;
            }
        }
        frame.written.set_range(start..end);
        if diff.is_empty() {
            return;
        }
        changed.insert(ts);
        // Cascade: later timestamps take the elements they did not write from here.
        while !diff.is_empty() && pos + 1 < self.frames.len() {
            let (head, tail) = self.frames.split_at_mut(pos + 1);
            let (prev, next) = (&head[pos], &mut tail[0]);
            let mut next_diff = Vec::new();
            for r in diff {
                for i in r {
                    let b = i * size..(i + 1) * size;
                    if !next.written.get(i) && next.data[b.clone()] != prev.data[b.clone()] {
                        Arc::make_mut(&mut next.data)[b.clone()].copy_from_slice(&prev.data[b]);
                        push_index(&mut next_diff, i);
                    }
                }
            }
            if !next_diff.is_empty() {
                changed.insert(next.ts);
            }
            diff = next_diff;
            pos += 1;
        }
    }

    /// The tensor at `ts`, if a chunk created that timestamp and it is still kept.
    pub fn get(&self, ts: Timestamp) -> Option<Tensor> {
        let pos = self.frames.partition_point(|f| f.ts < ts);
        let f = self.frames.get(pos).filter(|f| f.ts == ts)?;
        self.tensor(f)
    }

    /// The tensor as of `ts`: at the newest kept timestamp at or before it, or the fill
    /// value before the first. (A source state equal to its predecessor sends no chunk, so
    /// it has no timestamp of its own here.)
    pub fn state_at(&self, ts: Timestamp) -> Tensor {
        let pos = self.frames.partition_point(|f| f.ts <= ts);
        pos.checked_sub(1)
            .and_then(|p| self.tensor(&self.frames[p]))
            .unwrap_or_else(|| self.spec.initial())
    }

    /// The newest timestamp and its tensor.
    pub fn latest(&self) -> Option<(Timestamp, Tensor)> {
        let f = self.frames.last()?;
        Some((f.ts, self.tensor(f)?))
    }

    /// The kept timestamps, oldest first.
    pub fn timestamps(&self) -> Vec<Timestamp> {
        self.frames.iter().map(|f| f.ts).collect()
    }

    /// The kept `(timestamp, tensor)` at or before `ts` and the first after it (for
    /// interpolation).
    pub(crate) fn around(&self, ts: Timestamp) -> (Option<Stamped>, Option<Stamped>) {
        let pos = self.frames.partition_point(|f| f.ts <= ts);
        let at = |i: usize| {
            self.frames
                .get(i)
                .and_then(|f| Some((f.ts, self.tensor(f)?)))
        };
        (pos.checked_sub(1).and_then(at), at(pos))
    }

    /// The kept `(timestamp, tensor)` just before the one at index `before` of `around`'s
    /// left side (for extrapolation).
    pub(crate) fn before(&self, ts: Timestamp) -> Option<(Timestamp, Tensor)> {
        let pos = self.frames.partition_point(|f| f.ts < ts);
        let f = self.frames.get(pos.checked_sub(1)?)?;
        Some((f.ts, self.tensor(f)?))
    }

    fn tensor(&self, f: &Frame) -> Option<Tensor> {
        let data = Bytes::from_owner(Shared(Arc::clone(&f.data)));
        Tensor::new(self.spec.dtype, self.spec.shape.clone(), data).ok()
    }
}

#[cfg(test)]
#[path = "demuxer_tests.rs"]
mod tests;
