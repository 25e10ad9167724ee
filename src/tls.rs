//! TLS and mutual TLS for the roles and the transport (feature `tls`, on by default;
//! without it these items and the builders' `tls_server`/`tls_client` do not exist).
//!
//! A side that listens takes a [`ServerTls`] (its certificate and key, and for mutual
//! TLS the CA that client certificates must lead to); a side that dials takes a
//! [`ClientTls`] (the CA roots it trusts, optionally its own certificate, and the name
//! to verify). Both are built from PEM bytes or files and checked at once: bad input is
//! a [`TlsError`] naming the input and what is wrong.
//!
//! | topology | listening side | dialing side |
//! |---|---|---|
//! | source dials aggregator | `Aggregator::builder().listen(..).tls_server(..)` | `Source::builder().dial(..).tls_client(..)` |
//! | aggregator dials sources | `Source::builder().advertise(..).tls_server(..)` | `Aggregator::builder().discover(..).tls_client(..)` |
//!
//! By default the dialing side verifies the IP address it dialed against the server
//! certificate's IP subject alternative names; set [`ClientTls::server_name`] to verify
//! a DNS name instead (needed for discovered sources, whose addresses change). A
//! rejected certificate is reported as
//! [`ConnectionEvent::Refused`](crate::ConnectionEvent::Refused) (status
//! `UNAUTHENTICATED`) and not redialed; a connection that merely failed is.
//!
//! ```no_run
//! use tsercom::tls::{ClientTls, ServerTls};
//!
//! #[tsercom::runtime(data = Reading, event = Command)]
//! pub mod weather {
//!     #[tsercom::series]
//!     pub struct Reading {
//!         pub celsius: f64,
//!     }
//!     #[tsercom::series]
//!     pub enum Command {
//!         Calibrate,
//!         SetRate { hz: u32 },
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Aggregator: TLS server; sources must present a certificate from `ca.pem` (mTLS).
//! let aggregator = weather::Aggregator::builder()
//!     .listen("0.0.0.0:50051")
//!     .tls_server(ServerTls::from_files("agg.pem", "agg.key")?.client_ca_file("ca.pem")?)
//!     .start()
//!     .await?;
//!
//! // Source: verifies the aggregator's certificate for `aggregator.example.internal`.
//! let source = weather::Source::builder()
//!     .dial(["10.0.0.5:50051"])
//!     .tls_client(
//!         ClientTls::from_ca_file("ca.pem")?
//!             .server_name("aggregator.example.internal")?
//!             .identity_files("source.pem", "source.key")?,
//!     )
//!     .start()
//!     .await?;
//! # let _ = (aggregator, source);
//! # Ok(())
//! # }
//! # fn main() {}
//! ```

pub use tsercom_runtime::transport::{
    ClientTls, PemOrigin, PemRole, ServerTls, TlsError, TlsRejection, TlsRejectionCause,
    TlsReloader, DEFAULT_HANDSHAKE_TIMEOUT,
};
