//! Source side: [`SparseMuxer`] (only what changed) and [`CompleteMuxer`] (everything).
//!
//! The receiver's model (see [`Demuxer`](super::Demuxer)): the tensor at timestamp `T` is
//! the tensor at the timestamp before `T` (or the fill value) with the elements that `T`'s
//! chunks wrote. The sparse muxer keeps, per timestamp, the state it was given and which
//! elements its chunks wrote, and keeps this invariant: an element `T` did not write equals
//! the element before `T`. So
//! - a new timestamp sends the elements that differ from its predecessor;
//! - an edit at a timestamp already sent sends the elements that differ from *that
//!   timestamp's previous state* (the reference diffed against the predecessor, so an edit
//!   back to the predecessor's value never reached the receiver and it diverged forever);
//! - the elements that changed at `T` and that its successor `S` did not write now differ
//!   between `T` and `S`: they are sent at `S` too. `S`'s own state did not change, so the
//!   cascade stops there (the reference re-diffed every later timestamp).

use std::ops::Range;
use std::time::Duration;

use super::diff::{changed_runs, merge_runs, Bits, Joining};
use super::{Chunk, CompressionPolicy, Tensor, TensorError, TensorSpec, Update};
use crate::time::Timestamp;
use crate::wire;

/// Options of the muxers (and of the demuxers' history).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MuxerConfig {
    /// How far behind the newest timestamp a state is kept (and can still be edited).
    /// Default 60 s, as in the reference.
    pub history: Duration,
    /// At most this many timestamps are kept. Default 64. Memory is about `max_history` full
    /// tensors on each side: lower it for large tensors.
    pub max_history: usize,
    /// When chunks are LZ4-compressed. Default: from 1 KiB, when it shrinks them.
    pub compression: CompressionPolicy,
    /// When nearby changed runs are sent as one chunk (with the unchanged elements between
    /// them). `None` (the default): when the unchanged elements cost fewer bytes than the
    /// framing of another chunk (its timestamp, index and length prefixes, about 20-25
    /// bytes; computed exactly for each pair of runs), so an update is as small as joining
    /// can make it. `Some(n)`: runs at most `n` bytes apart. `Some(0)`: strictly
    /// contiguous runs only, as the reference sends them.
    pub merge_gap_bytes: Option<usize>,
    /// The largest tensor (element bytes) a demuxer accepts from a peer's
    /// `TensorInitializer` ([`Demuxer::from_initializer_with`](super::Demuxer::from_initializer_with)).
    /// Default 64 MiB: a few-byte initializer can name any shape, and the receiver keeps
    /// up to `max_history` full copies of it. Raise it for larger tensors (at most
    /// [`MAX_TENSOR_BYTES`](super::MAX_TENSOR_BYTES)).
    pub max_tensor_bytes: usize,
}

impl Default for MuxerConfig {
    fn default() -> Self {
        MuxerConfig {
            history: Duration::from_secs(60),
            max_history: 64,
            compression: CompressionPolicy::default(),
            merge_gap_bytes: None,
            max_tensor_bytes: 64 << 20,
        }
    }
}

/// The kept window: timestamps older than `floor` are refused.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Window {
    newest: Option<Timestamp>,
    floor: Option<Timestamp>,
}

impl Window {
    /// Refuses `ts` if it is older than what is kept.
    pub(crate) fn check(&self, ts: Timestamp, history: Duration) -> Result<(), TensorError> {
        let cutoff = self
            .newest
            .map(|n| n.max(ts).saturating_sub(history))
            .into_iter()
            .chain(self.floor)
            .max();
        match cutoff {
            Some(cutoff) if ts < cutoff => Err(TensorError::Stale {
                timestamp: ts,
                cutoff,
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn saw(&mut self, ts: Timestamp) {
        self.newest = Some(self.newest.map_or(ts, |n| n.max(ts)));
    }

    /// How many of the oldest of `stamps` (sorted) to drop, and records the new floor.
    pub(crate) fn prune(&mut self, stamps: &[Timestamp], config: &MuxerConfig) -> usize {
        let Some(newest) = self.newest else { return 0 };
        let cutoff = newest.saturating_sub(config.history);
        let old = stamps.partition_point(|t| *t < cutoff);
        let n = old.max(stamps.len().saturating_sub(config.max_history.max(1)));
        if n > 0 {
            let next = stamps.get(n).copied().unwrap_or(newest);
            self.floor = Some(self.floor.map_or(next, |f| f.max(next)));
        }
        n
    }
}

#[derive(Debug, Clone)]
struct Keyframe {
    ts: Timestamp,
    state: Tensor,
    written: Bits,
}

/// Turns a sequence of tensor states (each at a timestamp, in any order, edits allowed)
/// into [`Update`]s carrying only what changed. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct SparseMuxer {
    spec: TensorSpec,
    config: MuxerConfig,
    fill: Tensor,
    frames: Vec<Keyframe>,
    window: Window,
}

impl SparseMuxer {
    /// A muxer with the default [`MuxerConfig`].
    pub fn new(spec: TensorSpec) -> Self {
        Self::with_config(spec, MuxerConfig::default())
    }

    /// A muxer with `config`.
    pub fn with_config(spec: TensorSpec, config: MuxerConfig) -> Self {
        SparseMuxer {
            fill: spec.initial(),
            spec,
            config,
            frames: Vec::new(),
            window: Window::default(),
        }
    }

    /// The spec both ends share.
    pub fn spec(&self) -> &TensorSpec {
        &self.spec
    }

    /// Records `tensor` as the state at `ts` and returns the chunks that bring a receiver
    /// up to date (empty when nothing changed). Fails for a tensor of another dtype or
    /// size and for a timestamp older than the kept history.
    pub fn process(&mut self, tensor: &Tensor, ts: Timestamp) -> Result<Update, TensorError> {
        check(&self.spec, tensor)?;
        self.window.check(ts, self.config.history)?;
        let size = self.spec.dtype.size();
        let merge_gap = self.config.merge_gap_bytes;
        let joining = move |timestamp| match merge_gap {
            Some(bytes) => Joining::Gap(bytes / size),
            None => Joining::Framing { timestamp, size },
        };
        let mut update = Update::default();
        let pos = self.frames.partition_point(|f| f.ts < ts);
        let changed = if self.frames.get(pos).is_some_and(|f| f.ts == ts) {
            let changed = changed_runs(self.frames[pos].state.as_bytes(), tensor.as_bytes(), size);
            for r in merge_runs(changed.clone(), joining(ts)) {
                update.chunks.push(self.chunk(ts, tensor, r.clone()));
                self.frames[pos].written.set_range(r);
            }
            self.frames[pos].state = tensor.clone();
            changed
        } else {
            let before = pos
                .checked_sub(1)
                .map_or(&self.fill, |p| &self.frames[p].state);
            let changed = changed_runs(before.as_bytes(), tensor.as_bytes(), size);
            let mut written = Bits::new(self.spec.len());
            for r in merge_runs(changed.clone(), joining(ts)) {
                written.set_range(r.clone());
                update.chunks.push(self.chunk(ts, tensor, r));
            }
            self.frames.insert(
                pos,
                Keyframe {
                    ts,
                    state: tensor.clone(),
                    written,
                },
            );
            changed
        };
        // The successor: elements that changed here and that it did not write.
        if let Some(next) = self.frames.get(pos + 1) {
            let mut runs = Vec::new();
            for r in changed {
                for i in r {
                    if !next.written.get(i) {
                        super::diff::push_index(&mut runs, i);
                    }
                }
            }
            let (next_ts, next_state) = (next.ts, next.state.clone());
            for r in merge_runs(runs, joining(next_ts)) {
                self.frames[pos + 1].written.set_range(r.clone());
                update.chunks.push(self.chunk(next_ts, &next_state, r));
            }
        }
        self.window.saw(ts);
        let stamps: Vec<Timestamp> = self.frames.iter().map(|f| f.ts).collect();
        let drop = self.window.prune(&stamps, &self.config);
        self.frames.drain(..drop);
        Ok(update)
    }

    fn chunk(&self, ts: Timestamp, tensor: &Tensor, r: Range<usize>) -> Chunk {
        let size = self.spec.dtype.size();
        let bytes = tensor.as_bytes().slice(r.start * size..r.end * size);
        Chunk::encode(ts, r.start, bytes, self.config.compression)
    }

    /// The state recorded at `ts`, if kept.
    pub fn get(&self, ts: Timestamp) -> Option<&Tensor> {
        let pos = self.frames.partition_point(|f| f.ts < ts);
        self.frames
            .get(pos)
            .filter(|f| f.ts == ts)
            .map(|f| &f.state)
    }

    /// The kept timestamps, oldest first.
    pub fn timestamps(&self) -> Vec<Timestamp> {
        self.frames.iter().map(|f| f.ts).collect()
    }

    /// What a receiver that joins now needs: the spec and, as the initial state, every kept
    /// timestamp's written elements (so it ends up with exactly the states kept here).
    pub fn initializer(&self) -> wire::TensorInitializer {
        let mut update = Update::default();
        for f in &self.frames {
            for r in f.written.runs(self.spec.len()) {
                update.chunks.push(self.chunk(f.ts, &f.state, r));
            }
        }
        self.spec.to_initializer(&update)
    }
}

fn check(spec: &TensorSpec, tensor: &Tensor) -> Result<(), TensorError> {
    if tensor.dtype() != spec.dtype {
        return Err(TensorError::DTypeMismatch {
            expected: spec.dtype,
            got: tensor.dtype(),
        });
    }
    if tensor.len() != spec.len() {
        return Err(TensorError::Length {
            expected: spec.len(),
            got: tensor.len(),
        });
    }
    Ok(())
}

/// Sends every element of every state: one chunk per call (LZ4 when it pays). Keeps no
/// history; a receiver rebuilds each timestamp from its chunk alone.
#[derive(Debug, Clone)]
pub struct CompleteMuxer {
    spec: TensorSpec,
    compression: CompressionPolicy,
}

impl CompleteMuxer {
    /// A muxer for `spec` with the default compression policy.
    pub fn new(spec: TensorSpec) -> Self {
        CompleteMuxer {
            spec,
            compression: CompressionPolicy::default(),
        }
    }

    /// Sets the compression policy.
    pub fn compression(mut self, policy: CompressionPolicy) -> Self {
        self.compression = policy;
        self
    }

    /// The update carrying all of `tensor` at `ts`.
    pub fn process(&mut self, tensor: &Tensor, ts: Timestamp) -> Result<Update, TensorError> {
        check(&self.spec, tensor)?;
        if tensor.is_empty() {
            return Ok(Update::default());
        }
        Ok(Update {
            chunks: vec![Chunk::encode(
                ts,
                0,
                tensor.as_bytes().clone(),
                self.compression,
            )],
        })
    }
}

#[cfg(test)]
#[path = "muxer_tests.rs"]
mod tests;
