//! Unit tests of the aggregator's side of a connection: what it records as held from a
//! source, and what it keeps per source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use prost::encoding::{skip_field, uint64, DecodeContext, WireType};
use prost::DecodeError;

use super::core::{lock, Core, MAX_GAPS};
use super::departed::forget_departed;
use crate::backoff::Backoff;
use crate::data::RemoteDataAggregator;
use crate::engine::buffer::BufferLimits;
use crate::engine::connection::Handler;
use crate::engine::handshake::{Local, Peer};
use crate::engine::shared::{Role, Shared};
use crate::engine::{Delivery, Runtime, SessionConfig};
use crate::ids::CallerId;
use crate::queue::OverflowPolicy;
use crate::schema::SchemaRegistry;
use crate::series::Series;
use crate::time::SystemClock;
use crate::wire;

/// A message whose decoding panics on field 15 (a decoder bug).
#[derive(Debug, Clone, Default, PartialEq)]
struct Probe {
    n: u64,
}

impl prost::Message for Probe {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        if self.n != 0 {
            uint64::encode(1, &self.n, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            1 => uint64::merge(wire_type, &mut self.n, buf, ctx),
            15 => panic!("decoder bug"),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        if self.n != 0 {
            uint64::encoded_len(1, &self.n)
        } else {
            0
        }
    }

    fn clear(&mut self) {
        self.n = 0;
    }
}

impl Series for Probe {
    const MESSAGE_NAME: &'static str = "probe.Probe";
    fn describe(_registry: &mut SchemaRegistry) {}
}

struct Rt;

impl Runtime for Rt {
    type Data = Probe;
    type Event = Probe;
    const NAME: &'static str = "probe";
    const SERVICE: &'static str = "probe.Stream";
    const OPEN_PATH: &'static str = "/probe.Stream/Open";
}

fn core() -> Arc<Core<Rt>> {
    let config = SessionConfig::default();
    let limits = BufferLimits::default();
    let identity = crate::identity::Identity::random();
    let local = Local::new(wire::Role::Aggregator, identity.id(), 1, &config, &limits);
    let (shared, _events) = Shared::new(
        local,
        identity,
        None,
        Arc::new(SystemClock),
        config,
        Backoff::default(),
        None,
    );
    Arc::new(Core::new(shared, limits, RemoteDataAggregator::new()))
}

fn peer(id: CallerId) -> Peer {
    Peer {
        id,
        addr: None,
        max_frame_bytes: 4 << 20,
        incarnation: 1,
        idle_timeout: None,
        delivery: Delivery::Resumable,
        ack_every_samples: u64::MAX,
        ack_every_bytes: u64::MAX,
        schema: crate::engine::schemas::PeerSchema {
            data_fingerprint: 0,
            event_fingerprint: 0,
            data_differs: false,
            event_differs: false,
        },
        claim: None,
    }
}

fn good(n: u64) -> Bytes {
    Bytes::from(prost::Message::encode_to_vec(&Probe { n }))
}

fn frame(samples: impl IntoIterator<Item = (u64, Bytes)>) -> wire::Frame {
    wire::Frame {
        samples: samples
            .into_iter()
            .map(|(seq, payload)| wire::Sample {
                seq,
                time_ns: crate::time::Clock::now(&SystemClock).as_nanos(),
                payload,
                synchronized: true,
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_frame_with_a_sample_that_fails_or_panics_in_decoding_is_not_held() {
    let core = core();
    let id = CallerId::random();
    let (link, last) = core.connect(&peer(id));
    assert_eq!(last, 0);
    assert_eq!(link.frame(frame([(1, good(1))]), 0).await.unwrap(), 1);
    // A truncated field, then a field whose decoding panics.
    for bad in [
        Bytes::from_static(&[0x08]),
        Bytes::from_static(&[0x78, 0x01]),
    ] {
        let status = link
            .frame(frame([(2, good(2)), (3, bad)]), 1)
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("Sample.payload of sample 3"),
            "{status:?}"
        );
    }
    drop(link);
    // The source resumes after what was stored: 2 and 3 are sent again, not skipped.
    let (link, last) = core.connect(&peer(id));
    assert_eq!(last, 1);
    assert_eq!(
        link.frame(frame([(2, good(2)), (3, good(3))]), 1)
            .await
            .unwrap(),
        3
    );
    assert_eq!(core.data.get_most_recent(id).unwrap().unwrap().value.n, 3);
}

#[tokio::test]
async fn a_session_aborted_while_the_store_waits_loses_nothing() {
    let core = core();
    let id = CallerId::random();
    let mut sub = core.data.subscribe_with(1, OverflowPolicy::Block);
    let (link, _) = core.connect(&peer(id));
    assert_eq!(link.frame(frame([(1, good(1))]), 0).await.unwrap(), 1);
    {
        // The subscriber is full: the store waits, and the session is aborted there.
        let mut waiting = std::pin::pin!(link.frame(frame([(2, good(2)), (3, good(3))]), 1));
        assert!(futures::poll!(waiting.as_mut()).is_pending());
    }
    drop(link);
    assert_eq!(sub.recv().await.unwrap().1.seq, 1);
    let (link, last) = core.connect(&peer(id));
    assert_eq!(last, 1, "2 and 3 were not stored, so they are not held");
    assert_eq!(
        link.frame(frame([(2, good(2)), (3, good(3))]), 1)
            .await
            .unwrap(),
        3
    );
    assert_eq!(sub.recv().await.unwrap().1.seq, 2);
    assert_eq!(sub.recv().await.unwrap().1.seq, 3);
}

#[tokio::test]
async fn gaps_are_a_bounded_ring_and_departed_sources_are_freed() {
    let core = core();
    let departed = core.data.caller_events_with(16, OverflowPolicy::Block);
    let freeing = tokio::spawn(forget_departed(
        Arc::downgrade(&core),
        Arc::clone(&core.caller_events),
        departed,
    ));
    let id = CallerId::random();
    let (link, _) = core.connect(&peer(id));
    let announced = MAX_GAPS as u64 + 4;
    for seq in 1..=announced {
        let gap = wire::Gap {
            first_seq: seq,
            last_seq: seq,
            first_time_ns: 0,
            last_time_ns: 0,
        };
        assert_eq!(link.gap(gap, seq - 1).await.unwrap(), Some(seq));
    }
    {
        let gaps = lock(&core.gaps);
        assert_eq!(gaps.len(), MAX_GAPS);
        assert_eq!(
            gaps.front().unwrap().first_seq,
            5,
            "the oldest were dropped"
        );
    }
    assert_eq!(
        core.lost.load(std::sync::atomic::Ordering::Relaxed),
        announced
    );
    assert!(lock(&core.callers).contains_key(&id));
    // It leaves on purpose with no data: the store forgets it at once, and so does the
    // role (one that only dropped is kept for its events, see `tests/actuator.rs`).
    let mut link = link;
    link.left_on_purpose = true;
    drop(link);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while lock(&core.callers).contains_key(&id) {
        assert!(tokio::time::Instant::now() < deadline, "never freed");
        tokio::task::yield_now().await;
    }
    freeing.abort();
}
