//! Discovery beyond the types at the crate root ([`Discovery`](crate::Discovery),
//! [`DiscoveryError`](crate::DiscoveryError), [`DiscoveryEvent`](crate::DiscoveryEvent),
//! [`Instance`](crate::Instance)): the mDNS configuration (feature `mdns`), DNS-SD
//! (feature `dns`), writing your own [`Registry`], the [`Connector`] that keeps one
//! connection per discovered peer, and the TXT keys of an advertisement.

pub use tsercom_runtime::discovery::connector::{VERIFY_AFTER_FAILURES, VERIFY_EVERY_FAILURES};
pub use tsercom_runtime::discovery::{
    format_published_on, parse_published_on, service_type, Advertisement, Connector,
    ConnectorEvent, Failure, Listener, PeerKey, PublishHandle, Publisher, Registry, Verifier,
    MAX_SERVICE_NAME_LEN, TXT_CALLER_ID, TXT_HOST, TXT_NAME, TXT_PROTO, TXT_PUBLISHED_ON,
    TXT_SCHEMA, TXT_TLS, TXT_UNIX,
};
#[cfg(feature = "dns")]
pub use tsercom_runtime::discovery::{
    DnsConfig, DnsLookup, DnsRegistry, DnsUpdate, TsigAlgorithm, TsigKey,
};
#[cfg(feature = "mdns")]
pub use tsercom_runtime::discovery::{InterfacePolicy, MdnsConfig, MDNS_PORT};
