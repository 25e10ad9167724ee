use std::time::Duration;

use tsercom::discovery::MdnsConfig;
use tsercom::Discovery;

/// The runtime: what sensors send (`Reading`) and what the aggregator sends back (`Command`).
/// No `.proto` file: the macros derive the protobuf messages and the schema.
#[tsercom::runtime(data = Reading, event = Command)]
pub mod sensors {
    /// One measurement.
    #[tsercom::series]
    pub struct Reading {
        /// Temperature.
        pub celsius: f64,
        /// Relative humidity, 0 to 100.
        pub humidity: f32,
    }

    /// What the aggregator can tell a sensor.
    #[tsercom::series]
    pub enum Command {
        /// Recalibrate.
        Calibrate,
        /// Reset.
        Reset,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // mDNS on the loopback interface: both ends on this machine, nothing leaves it.
    // On a network, use `Discovery::mdns()`.
    let mdns = Discovery::mdns_with(MdnsConfig::loopback());

    // An aggregator discovers sources, dials them and collects their samples.
    let aggregator = sensors::Aggregator::builder()
        .discover(mdns.clone())
        .start()
        .await?;
    let mut updates = aggregator.data().subscribe();

    // A source hosts its stream and advertises it.
    let source = sensors::Source::builder()
        .advertise(mdns)
        .name("kitchen")
        .start()
        .await?;
    let mut events = source.events();

    // Samples sent before the aggregator connects wait in the source's buffer.
    for i in 0..100 {
        let reading = sensors::Reading {
            celsius: 20.0 + f64::from(i) / 10.0,
            humidity: 40.0,
        };
        source.send(reading).await?;
    }

    // Every sample, keyed by the source's caller id, stamped in the aggregator's clock.
    for _ in 0..100 {
        let (caller, item) = tokio::time::timeout(Duration::from_secs(30), updates.recv())
            .await?
            .ok_or("the aggregator stopped")?;
        println!("{caller} at {}: {:.1} °C", item.time, item.value.celsius);
    }

    // Events go the other way.
    aggregator.send(source.id(), sensors::Command::Calibrate).await?;
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await?
        .ok_or("the event stream ended")?;
    println!("the source got {:?}", event.value);

    // Sources first, so everything they sent is acknowledged.
    source.shutdown(Duration::from_secs(2)).await;
    aggregator.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
