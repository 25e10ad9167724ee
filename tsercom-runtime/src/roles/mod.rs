//! The roles: [`Source`] (produces data, receives events) and [`Aggregator`] (collects
//! every source's data keyed by `CallerId`, sends events, is the time authority), over
//! the tsercom stream of a [`Runtime`](crate::engine::Runtime).
//!
//! `#[tsercom::runtime]` implements `Runtime` for a module and names these types for it
//! (`weather::Source` is `Source<weather::Runtime>`); everything here is generic so the
//! generated code stays small. Each role is its builder, its public API and its side of
//! a connection (the engine's `Role` and `Handler`); the connection itself is
//! [`crate::engine`]'s.

mod aggregator;
mod hub;
mod settings;
mod source;

pub use aggregator::{
    Aggregator, AggregatorBuilder, AggregatorStats, DataGap, PeerClock, PerSourceStats,
    SendEventError, SourceInfo, WaitError,
};
pub(crate) use aggregator::{Forward, Forwarded};
pub use source::{Event, PerAggregatorStats, Source, SourceBuilder, SourceStats};
