//! Mutual TLS: an aggregator that only accepts sources with a certificate from its CA.
//!
//! ```sh
//! cargo run --example tls
//! ```
//!
//! The example makes its own throwaway certificate authority and certificates (with
//! rcgen, into a temporary directory); in a deployment they come from your PKI as PEM
//! files. One source presents a good client certificate and streams readings; another
//! presents none and is refused during the TLS handshake, which it sees as a
//! `ConnectionEvent::Refused` (not retried). Everything stays on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tsercom::tls::{ClientTls, ServerTls};
use tsercom::ConnectionEvent;

/// The runtime: pressure readings from sources, commands back.
#[tsercom::runtime(data = Reading, event = Command)]
pub mod plant {
    /// One measurement.
    #[tsercom::series]
    pub struct Reading {
        /// Pressure in bar.
        pub bar: f64,
    }

    /// What the aggregator can tell a source.
    #[tsercom::series]
    pub enum Command {
        /// Recalibrate.
        Calibrate,
        /// Change the sampling rate.
        SetRate {
            /// Samples per second.
            hz: u32,
        },
    }
}

/// The name every certificate of this deployment carries; sources verify it.
const NAME: &str = "aggregator.plant.internal";

type Error = Box<dyn std::error::Error>;

/// Writes `pem` to `dir/file` and returns the path.
fn write(dir: &Path, file: &str, pem: &str) -> Result<PathBuf, Error> {
    let path = dir.join(file);
    std::fs::write(&path, pem)?;
    Ok(path)
}

/// A throwaway CA: its certificate file, and the issuer that signs leaves.
fn make_ca(dir: &Path) -> Result<(PathBuf, Issuer<'static, KeyPair>), Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "plant example CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let file = write(dir, "ca.pem", &params.self_signed(&key)?.pem())?;
    Ok((file, Issuer::new(params, key)))
}

/// A leaf certificate for `name`, signed by `ca`: (certificate file, key file).
fn make_leaf(
    dir: &Path,
    ca: &Issuer<'static, KeyPair>,
    file: &str,
    name: &str,
) -> Result<(PathBuf, PathBuf), Error> {
    let mut params = CertificateParams::new(vec![name.to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((
        write(dir, &format!("{file}.pem"), &cert.pem())?,
        write(dir, &format!("{file}.key"), &key.serialize_pem())?,
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let (ca, issuer) = make_ca(dir.path())?;
    let (agg_cert, agg_key) = make_leaf(dir.path(), &issuer, "aggregator", NAME)?;
    let (src_cert, src_key) = make_leaf(dir.path(), &issuer, "source", "boiler.plant.internal")?;

    // The aggregator: TLS with its certificate, and sources must present one from `ca`.
    let aggregator = plant::Aggregator::builder()
        .listen("127.0.0.1:0")
        .tls_server(ServerTls::from_files(&agg_cert, &agg_key)?.client_ca_file(&ca)?)
        .start()
        .await?;
    let addr = aggregator.local_addr().ok_or("the aggregator listens")?;
    println!("aggregator listening with mutual TLS on {addr}");

    // A source with a client certificate. It dials an IP address, but verifies the name
    // the aggregator's certificate carries.
    let trusted =
        || -> Result<ClientTls, Error> { Ok(ClientTls::from_ca_file(&ca)?.server_name(NAME)?) };
    let boiler = plant::Source::builder()
        .dial([addr])
        .tls_client(trusted()?.identity_files(&src_cert, &src_key)?)
        .start()
        .await?;
    for i in 0..100 {
        boiler
            .send(plant::Reading {
                bar: 1.0 + f64::from(i) / 100.0,
            })
            .await?;
    }
    let started = Instant::now();
    while aggregator.stats().received < 100 {
        if started.elapsed() > Duration::from_secs(10) {
            return Err("the readings did not arrive within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let latest = aggregator
        .data()
        .get_most_recent(boiler.id())?
        .ok_or("a reading")?;
    println!(
        "boiler (client certificate): 100 readings over mutual TLS, latest {:.2} bar",
        latest.value.bar
    );

    // A source without a client certificate: refused in the handshake, not retried.
    let intruder = plant::Source::builder()
        .dial([addr])
        .tls_client(trusted()?)
        .start()
        .await?;
    let mut events = intruder.connection_events();
    match tokio::time::timeout(Duration::from_secs(10), events.recv()).await? {
        Some(ConnectionEvent::Refused { status, .. }) => {
            println!("intruder (no client certificate): {status}");
        }
        other => return Err(format!("expected a refusal, got {other:?}").into()),
    }

    boiler.shutdown(Duration::from_secs(2)).await;
    intruder.shutdown(Duration::from_secs(1)).await;
    aggregator.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
