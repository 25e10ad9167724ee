//! A weather station to try the `tsercom` command on: a source of the runtime `weather`
//! that advertises itself over mDNS and sends a reading at a steady rate.
//!
//! ```sh
//! cargo run -p tsercom-cli --example station -- --name roof
//! tsercom --loopback browse weather
//! tsercom --loopback tail weather/roof
//! ```
//!
//! Options: `--name NAME` (default `station`), `--proto FILE` (writes the runtime's
//! `.proto` there, for the commands' `--proto` override), `--hz N` (default 10),
//! `--seconds N` (default: until Ctrl-C), `--lan` (real interfaces; default loopback only).

use std::time::Duration;

use tsercom::discovery::MdnsConfig;
use tsercom::Discovery;

/// The runtime the station speaks.
#[tsercom::runtime(data = Reading, event = Command)]
pub mod weather {
    /// One measurement.
    #[tsercom::series]
    pub struct Reading {
        /// Temperature.
        pub celsius: f64,
        /// Relative humidity, 0 to 100.
        pub humidity: f32,
        /// Which station.
        pub station: String,
    }

    /// What an aggregator can tell a station.
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

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    args.find(|a| a == name)?;
    args.next()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = arg("--name").unwrap_or_else(|| "station".into());
    let hz: u32 = arg("--hz").map_or(Ok(10), |s| s.parse())?;
    let seconds: Option<u64> = arg("--seconds").map(|s| s.parse()).transpose()?;
    let lan = std::env::args().any(|a| a == "--lan");
    if let Some(path) = arg("--proto") {
        std::fs::write(&path, weather::proto())?;
    }
    let discovery = if lan {
        Discovery::mdns()
    } else {
        Discovery::mdns_with(MdnsConfig::loopback())
    };
    let source = weather::Source::builder()
        .advertise(discovery)
        .name(name.clone())
        .start()
        .await?;
    eprintln!("station {name} ({}) sending {hz} Hz", source.id());
    let mut tick = tokio::time::interval(Duration::from_secs(1) / hz.max(1));
    let stop = async {
        match seconds {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut i = 0u32;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let t = f64::from(i) / f64::from(hz.max(1));
        source
            .send(weather::Reading {
                celsius: 20.0 + (t / 10.0).sin(),
                humidity: 40.0 + (i % 10) as f32,
                station: name.clone(),
            })
            .await?;
        i += 1;
    }
    source.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
