//! Quickstart: three sensors advertise themselves over mDNS, an aggregator discovers them,
//! collects their readings keyed by caller id in one synchronized clock, and sends them a
//! command; then everything shuts down cleanly.
//!
//! ```sh
//! cargo run --example quickstart            # loopback only: nothing leaves this machine
//! cargo run --example quickstart -- --lan   # real interfaces, for use on a real network
//! ```
//!
//! The sensors' clocks are deliberately wrong (+250 ms, -40 ms, +3 s) to show that every
//! timestamp still arrives in the aggregator's clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tsercom::discovery::MdnsConfig;
use tsercom::{CallerId, Clock, Discovery, SkewedClock, Timestamp};

/// The runtime: what sensors send (`Reading`) and what the aggregator sends back
/// (`Command`). No `.proto` file: the macros derive the protobuf messages and schema.
#[tsercom::runtime(data = Reading, event = Command)]
pub mod sensors {
    /// One measurement.
    #[tsercom::series(interpolate)]
    pub struct Reading {
        /// Temperature.
        pub celsius: f64,
        /// Relative humidity, 0 to 100.
        pub humidity: f32,
    }

    /// What the aggregator can tell a sensor.
    #[tsercom::series]
    pub enum Command {
        /// Change the sampling rate.
        SetRate {
            /// Samples per second.
            hz: u32,
        },
        /// Recalibrate.
        Calibrate,
    }
}

const SENSORS: [(&str, i64); 3] = [
    ("kitchen", 250_000_000),
    ("garage", -40_000_000),
    ("attic", 3_000_000_000),
];
const RATE_HZ: u64 = 200;
const RUN: Duration = Duration::from_secs(3);

#[derive(Default)]
struct PerSource {
    received: u64,
    latencies_us: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize - 1;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lan = std::env::args().any(|a| a == "--lan");
    let discovery = if lan {
        Discovery::mdns()
    } else {
        Discovery::mdns_with(MdnsConfig::loopback())
    };
    println!(
        "tsercom quickstart: runtime `sensors` on mDNS service type {} ({})",
        sensors::SERVICE_TYPE,
        if lan {
            "all interfaces"
        } else {
            "loopback only"
        }
    );

    // The aggregator: discovers sources and dials them. It is the time authority.
    let aggregator = sensors::Aggregator::builder()
        .discover(discovery.clone())
        .start()
        .await?;
    let mut updates = aggregator.data().subscribe();

    // Three sources, each advertising itself with its own (wrong) clock.
    let mut sources = Vec::new();
    let mut names = HashMap::new();
    for (name, offset_ns) in SENSORS {
        let clock: Arc<dyn Clock> = Arc::new(SkewedClock::new(offset_ns, 0.0));
        let source = sensors::Source::builder()
            .advertise(discovery.clone())
            .name(name)
            .clock(clock)
            .start()
            .await?;
        names.insert(source.id(), name);
        sources.push(Arc::new(source));
    }
    let started = Instant::now();
    while aggregator.connected().len() < SENSORS.len() {
        if started.elapsed() > Duration::from_secs(15) {
            return Err("the aggregator did not discover every sensor within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "discovered {} sensors in {:.0} ms; streaming {RATE_HZ} Hz each for {} s",
        SENSORS.len(),
        started.elapsed().as_secs_f64() * 1e3,
        RUN.as_secs()
    );

    // Each sensor streams readings and prints the commands it receives.
    let mut tasks = Vec::new();
    for source in &sources {
        let source = Arc::clone(source);
        let name = names[&source.id()];
        let mut events = source.events();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_HZ));
            let end = Instant::now() + RUN;
            let mut i = 0_u64;
            while Instant::now() < end {
                tokio::select! {
                    _ = tick.tick() => {
                        i += 1;
                        let reading = sensors::Reading {
                            celsius: 20.0 + (i as f64 / 50.0).sin(),
                            humidity: 40.0 + (i % 10) as f32,
                        };
                        if source.send(reading).await.is_err() {
                            break;
                        }
                    }
                    Some(event) = events.recv() => {
                        println!(
                            "  {name:<8} got {:?} (sent at aggregator time {}, local time {})",
                            event.value, event.time, event.local_time
                        );
                    }
                }
            }
        }));
    }

    // Halfway through, tell every sensor something.
    let consume_until = Instant::now() + RUN + Duration::from_millis(500);
    let mut stats: HashMap<CallerId, PerSource> = HashMap::new();
    let mut commanded = false;
    while Instant::now() < consume_until {
        if !commanded && started.elapsed() > RUN / 2 {
            let sent_to = aggregator
                .broadcast(sensors::Command::SetRate { hz: 100 })
                .await;
            println!(
                "aggregator: broadcast SetRate {{ hz: 100 }} to {} sensors",
                sent_to.len()
            );
            commanded = true;
        }
        let wait = tokio::time::sleep(Duration::from_millis(50));
        tokio::select! {
            Some((caller, item)) = updates.recv() => {
                let s = stats.entry(caller).or_default();
                s.received += 1;
                // Both times are in the aggregator's clock, whatever the sensor's clock says.
                let latency = Timestamp::now().nanos_since(item.time) as f64 / 1e3;
                s.latencies_us.push(latency);
            }
            () = wait => {}
        }
    }
    for t in tasks {
        t.await?;
    }

    println!();
    println!(
        "{:<8} {:>8} {:>9} {:>9} {:>9} {:>16} {:>12} {:>11} {:>11}",
        "sensor",
        "samples",
        "rate/s",
        "celsius",
        "humidity",
        "clock offset ms",
        "± uncert µs",
        "lat p50 µs",
        "lat p99 µs"
    );
    let clocks: HashMap<CallerId, _> = aggregator.clocks().into_iter().collect();
    for source in &sources {
        let id = source.id();
        let s = stats.remove(&id).unwrap_or_default();
        let mut lat = s.latencies_us;
        lat.sort_by(f64::total_cmp);
        let latest = aggregator.data().get_most_recent(id)?;
        let (celsius, humidity) = latest
            .map(|r| (r.value.celsius, r.value.humidity))
            .unwrap_or((f64::NAN, f32::NAN));
        let (offset_ms, uncertainty_us) = match clocks.get(&id).copied().flatten() {
            Some(c) => (
                c.offset_ns as f64 / 1e6,
                c.uncertainty.as_nanos() as f64 / 1e3,
            ),
            None => (f64::NAN, f64::NAN),
        };
        println!(
            "{:<8} {:>8} {:>9.1} {:>9.3} {:>9.1} {:>16.3} {:>12.1} {:>11.0} {:>11.0}",
            names[&id],
            s.received,
            s.received as f64 / RUN.as_secs_f64(),
            celsius,
            humidity,
            offset_ms,
            uncertainty_us,
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
        );
    }
    println!("(clock offset = aggregator time minus sensor time, as each sensor measured it)");

    // Shut down: sources first, so everything they sent is acknowledged.
    for source in sources {
        if let Ok(source) = Arc::try_unwrap(source) {
            source.shutdown(Duration::from_secs(2)).await;
        }
    }
    aggregator.shutdown(Duration::from_secs(2)).await;
    println!(
        "shut down cleanly; {} samples received in all",
        aggregator_total(&aggregator)
    );
    Ok(())
}

fn aggregator_total(aggregator: &sensors::Aggregator) -> u64 {
    aggregator.stats().received
}
