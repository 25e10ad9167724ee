//! RuntimeManager: runtimes on their own threads driven from plain (non-async) code; the
//! first error or panic of anything it runs reaches the caller; shutdown delivers the data
//! produced before it.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::DEADLINE;
use tsercom::{Aggregator, ManagerError, RuntimeManager, Source};

#[tsercom::series]
#[derive(PartialEq)]
pub struct Sample {
    pub n: u64,
}

#[tsercom::series]
#[derive(PartialEq)]
pub struct Ping {
    pub id: u32,
}

/// The runtime `plant`.
#[tsercom::runtime(data = super::Sample, event = super::Ping)]
pub mod plant {}

type Plant = plant::Runtime;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn wait_for_error(manager: &RuntimeManager) -> ManagerError {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        if let Err(e) = manager.check_for_error() {
            return e;
        }
        assert!(std::time::Instant::now() < deadline, "no error reported");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sync_code_drives_runtimes_and_shutdown_delivers_trailing_data() {
    const N: u64 = 5_000;
    let mut manager = RuntimeManager::new();
    let agg = manager.register("aggregator", || async {
        Aggregator::<Plant>::builder()
            .listen("127.0.0.1:0")
            .retention(None)
            .start()
            .await
    });
    let agg_started = agg.clone();
    let source = manager.register("source", move || async move {
        let agg = agg_started.started().await?;
        let addr = agg.local_addr().ok_or("aggregator has no address")?;
        Ok::<_, BoxError>(Source::<Plant>::builder().dial([addr]).start().await?)
    });
    manager.start_in_process().unwrap();
    assert_eq!(
        manager.start_in_process(),
        Err(ManagerError::AlreadyStarted)
    );

    let aggregator = agg.wait(DEADLINE).unwrap();
    let src = source.wait(DEADLINE).unwrap();
    source
        .block_on(|s| async move {
            for n in 1..=N {
                s.send(Sample { n }).await.unwrap();
            }
        })
        .unwrap();
    // Stop at once: the source flushes before the aggregator stops.
    manager.check_for_error().unwrap();
    manager.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(aggregator.stats().received, N);
    let got = aggregator
        .data()
        .get_most_recent(src.id())
        .unwrap()
        .unwrap();
    assert_eq!(got.value, Sample { n: N });
}

#[test]
fn a_task_error_surfaces_first_error_wins_and_stays() {
    let mut manager = RuntimeManager::new();
    manager.start_in_process().unwrap();
    manager.check_for_error().unwrap();
    manager
        .spawn("sensor", async { Err::<(), _>("sensor unplugged") })
        .unwrap();
    let e = wait_for_error(&manager);
    assert_eq!(
        e,
        ManagerError::Failed {
            name: "sensor".into(),
            message: "sensor unplugged".into()
        }
    );
    assert!(e.to_string().contains("sensor unplugged"));
    manager
        .spawn("second", async { Err::<(), _>("later failure") })
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(manager.check_for_error(), Err(e.clone()));
    assert_eq!(manager.run_until_error(), e);
    manager.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_panic_surfaces_with_its_message() {
    let mut manager = RuntimeManager::new();
    manager.start_in_process().unwrap();
    manager
        .spawn("worker", async {
            let v: Vec<u32> = Vec::new();
            if v.is_empty() {
                panic!("worker lost its mind");
            }
            Ok::<(), String>(())
        })
        .unwrap();
    let e = wait_for_error(&manager);
    assert!(
        matches!(&e, ManagerError::Panicked { name, message } if name == "worker" && message.contains("lost its mind")),
        "{e:?}"
    );
    manager.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn a_runtime_that_fails_to_start_reports_why() {
    let mut manager = RuntimeManager::new();
    let bad = manager.register("misconfigured", || async {
        // Neither serve nor dial: a configuration error.
        Source::<Plant>::builder().start().await
    });
    manager.start_in_process().unwrap();
    let e = bad.wait(DEADLINE).unwrap_err();
    assert!(
        matches!(&e, ManagerError::Failed { name, message }
        if name == "misconfigured" && message.contains("serve")),
        "{e:?}"
    );
    assert_eq!(wait_for_error(&manager), e);
    manager.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn spawning_before_start_is_an_error() {
    let mut manager = RuntimeManager::new();
    assert_eq!(
        manager.spawn("early", async { Ok::<(), String>(()) }),
        Err(ManagerError::NotStarted)
    );
}

/// A sample type with a hand-written `Message` whose decoding panics on one value: a
/// user's bug inside the aggregator's session with one source.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fragile {
    pub n: u64,
}

const POISON: u64 = 666;

mod fragile_codec {
    use tsercom::__private::prost::bytes::{Buf, BufMut};
    use tsercom::__private::prost::encoding::{skip_field, uint64, DecodeContext, WireType};
    use tsercom::__private::prost::{DecodeError, Message};
    use tsercom::schema::SchemaRegistry;
    use tsercom::Series;

    use super::{Fragile, Sample, POISON};

    impl Message for Fragile {
        fn encode_raw(&self, buf: &mut impl BufMut) {
            if self.n != 0 {
                uint64::encode(1, &self.n, buf);
            }
        }

        fn merge_field(
            &mut self,
            tag: u32,
            wire_type: WireType,
            buf: &mut impl Buf,
            ctx: DecodeContext,
        ) -> Result<(), DecodeError> {
            if tag != 1 {
                return skip_field(wire_type, tag, buf, ctx);
            }
            uint64::merge(wire_type, &mut self.n, buf, ctx)?;
            assert_ne!(self.n, POISON, "poisoned sample");
            Ok(())
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

    // The same schema as `Sample` (one `uint64 n = 1`).
    impl Series for Fragile {
        const MESSAGE_NAME: &'static str = <Sample as Series>::MESSAGE_NAME;

        fn describe(registry: &mut SchemaRegistry) {
            <Sample as Series>::describe(registry);
        }
    }
}

/// The runtime `fickle`.
#[tsercom::runtime(data = super::Fragile, event = super::Ping)]
pub mod fickle {}

type Fickle = fickle::Runtime;

#[test]
fn a_panic_in_one_session_is_reported_and_other_sources_keep_flowing() {
    let mut manager = RuntimeManager::new();
    let agg = manager.register("aggregator", || async {
        Aggregator::<Fickle>::builder()
            .listen("127.0.0.1:0")
            .retention(None)
            .start()
            .await
    });
    let mut dial = |name: &str| {
        let agg = agg.clone();
        manager.register(name, move || async move {
            let agg = agg.started().await?;
            let addr = agg.local_addr().ok_or("aggregator has no address")?;
            Ok::<_, BoxError>(Source::<Fickle>::builder().dial([addr]).start().await?)
        })
    };
    let steady = dial("steady");
    let fragile = dial("fragile");
    manager.start_in_process().unwrap();
    let aggregator = agg.wait(DEADLINE).unwrap();
    let steady_id = steady.wait(DEADLINE).unwrap().id();
    let mut events = aggregator.connection_events();
    let latest = || {
        aggregator
            .data()
            .get_most_recent(steady_id)
            .ok()
            .flatten()
            .map(|s| s.value.n)
    };
    let wait_for_steady = |n: u64| {
        let deadline = std::time::Instant::now() + DEADLINE;
        while latest() != Some(n) {
            assert!(
                std::time::Instant::now() < deadline,
                "sample {n} never arrived"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    steady
        .block_on(|s| async move { s.send(Fragile { n: 1 }).await.unwrap() })
        .unwrap();
    wait_for_steady(1);
    manager.check_for_error().unwrap();
    aggregator.health().unwrap();

    fragile
        .block_on(|s| async move { s.send(Fragile { n: POISON }).await.unwrap() })
        .unwrap();
    let e = wait_for_error(&manager);
    assert!(
        matches!(&e, ManagerError::Panicked { name, message }
            if name == "aggregator"
                && message.contains("session with source")
                && message.contains("poisoned sample")),
        "{e:?}"
    );
    match aggregator.health() {
        Err(tsercom::RuntimeError::Internal(fault)) => {
            assert!(fault.panicked, "{fault:?}");
            assert!(fault.message.contains("poisoned sample"), "{fault:?}");
        }
        other => panic!("expected an internal fault, got {other:?}"),
    }
    assert!(aggregator.stats().faults >= 1);
    let reported = agg
        .block_on(|_| async move {
            tokio::time::timeout(DEADLINE, async {
                while let Some(event) = events.recv().await {
                    if let tsercom::ConnectionEvent::Fault(fault) = event {
                        return Some(fault);
                    }
                }
                None
            })
            .await
        })
        .unwrap();
    assert!(
        matches!(&reported, Ok(Some(f)) if f.message.contains("poisoned sample")),
        "{reported:?}"
    );

    // The other session never noticed: the steady source keeps flowing.
    steady
        .block_on(|s| async move {
            for n in 2..=200 {
                s.send(Fragile { n }).await.unwrap();
            }
        })
        .unwrap();
    wait_for_steady(200);
    assert!(aggregator.connected().contains(&steady_id));
    // The first error stays.
    assert_eq!(manager.check_for_error(), Err(e));
    manager.shutdown(Duration::from_secs(5)).unwrap();
}

/// A user clock that panics once when tripped.
#[derive(Debug, Default)]
struct TrippedClock {
    armed: std::sync::atomic::AtomicBool,
}

impl tsercom::Clock for TrippedClock {
    fn now(&self) -> tsercom::Timestamp {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("clock tripped");
        }
        tsercom::SystemClock.now()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialing_source_whose_session_panics_reports_it_and_redials() {
    use tsercom::Clock as _;
    let agg = Aggregator::<Plant>::builder()
        .listen("127.0.0.1:0")
        .retention(None)
        .start()
        .await
        .unwrap();
    let clock = std::sync::Arc::new(TrippedClock::default());
    let source = Source::<Plant>::builder()
        .clock(clock.clone())
        .dial([agg.local_addr().unwrap()])
        .start()
        .await
        .unwrap();
    let arrived = |n: u64| {
        let agg = &agg;
        let id = source.id();
        async move {
            tokio::time::timeout(DEADLINE, async {
                while agg
                    .data()
                    .get_most_recent(id)
                    .ok()
                    .flatten()
                    .map(|s| s.value.n)
                    != Some(n)
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("sample {n} never arrived"));
        }
    };
    // `send_at` with the system's time: only the session reads the user clock.
    source
        .send_at(tsercom::SystemClock.now(), Sample { n: 1 })
        .await
        .unwrap();
    arrived(1).await;
    source.health().unwrap();

    // The next reading of the clock is in the session (an ack or time reply arrives).
    clock.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let fault = tokio::time::timeout(DEADLINE, source.fault())
        .await
        .unwrap();
    assert!(fault.panicked, "{fault:?}");
    assert_eq!(fault.message, "clock tripped");
    assert!(fault.task.contains("session with aggregator"), "{fault:?}");
    assert!(matches!(
        source.health(),
        Err(tsercom::RuntimeError::Internal(f)) if f == fault
    ));
    assert_eq!(source.stats().faults, 1);

    // The source redials and its data keeps flowing.
    for n in 2..=100 {
        source
            .send_at(tsercom::SystemClock.now(), Sample { n })
            .await
            .unwrap();
    }
    arrived(100).await;
    assert!(source.flush(DEADLINE).await);
    source.shutdown(Duration::from_secs(1)).await;
    agg.shutdown(Duration::from_secs(1)).await;
}
