//! Where a peer listens: a TCP socket address or a Unix domain socket path.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The prefix that marks a Unix domain socket path in an endpoint's text form.
pub const UNIX_PREFIX: &str = "unix:";

/// Where a server listens or a dialer connects: a TCP socket address (IPv4 or IPv6) or
/// a Unix domain socket path (same host only).
///
/// The text form is what users write in configuration: `127.0.0.1:50051`,
/// `[::1]:50051`, or `unix:/run/app/agg.sock`. [`Display`](fmt::Display) writes the
/// same form back, so an endpoint survives a round trip through text.
///
/// ```
/// # use tsercom_runtime as tsercom;
/// use tsercom::transport::Endpoint;
///
/// let tcp: Endpoint = "127.0.0.1:50051".parse()?;
/// assert_eq!(tcp.as_tcp(), Some("127.0.0.1:50051".parse()?));
///
/// let unix: Endpoint = "unix:/run/app/agg.sock".parse()?;
/// assert_eq!(unix.to_string(), "unix:/run/app/agg.sock");
/// assert!(unix.as_tcp().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

impl Endpoint {
    /// A Unix domain socket endpoint at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Endpoint::Unix(path.into())
    }

    /// The TCP address, if this is a TCP endpoint.
    pub fn as_tcp(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(addr) => Some(*addr),
            Endpoint::Unix(_) => None,
        }
    }

    /// The socket path, if this is a Unix domain socket endpoint.
    pub fn as_unix(&self) -> Option<&Path> {
        match self {
            Endpoint::Tcp(_) => None,
            Endpoint::Unix(path) => Some(path),
        }
    }

    /// Whether this is a Unix domain socket endpoint.
    pub fn is_unix(&self) -> bool {
        matches!(self, Endpoint::Unix(_))
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Self {
        Endpoint::Tcp(addr)
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(endpoint: &Endpoint) -> Self {
        endpoint.clone()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => addr.fmt(f),
            Endpoint::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// Text that is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid endpoint {input:?}: {reason} (expected `host-ip:port`, `[v6-ip]:port` or `unix:/path`)")]
pub struct EndpointParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for Endpoint {
    type Err = EndpointParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |reason| EndpointParseError {
            input: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix(UNIX_PREFIX) {
            if path.is_empty() {
                return Err(error("the socket path is empty"));
            }
            if path.contains('\0') {
                return Err(error("the socket path contains a NUL byte"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        s.parse::<SocketAddr>()
            .map(Endpoint::Tcp)
            .map_err(|_| error("not a socket address"))
    }
}

/// What builders accept where an endpoint is expected: an [`Endpoint`], a
/// [`SocketAddr`], or the text form (`"127.0.0.1:50051"`, `"unix:/run/app/agg.sock"`).
///
/// Text is parsed when the value is used, so a builder method can take it directly and
/// report a bad address from its `start()` as a configuration error.
pub trait IntoEndpoint {
    /// The endpoint, or why the text is not one.
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError>;
}

impl IntoEndpoint for Endpoint {
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError> {
        Ok(self)
    }
}

impl IntoEndpoint for &Endpoint {
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError> {
        Ok(self.clone())
    }
}

impl IntoEndpoint for SocketAddr {
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError> {
        Ok(Endpoint::Tcp(self))
    }
}

impl IntoEndpoint for &str {
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError> {
        self.parse()
    }
}

impl IntoEndpoint for String {
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError> {
        self.parse()
    }
}

impl IntoEndpoint for &String {
    fn into_endpoint(self) -> Result<Endpoint, EndpointParseError> {
        self.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips() {
        for text in [
            "127.0.0.1:1",
            "[::1]:50051",
            "unix:/tmp/a b.sock",
            "unix:rel.sock",
        ] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
    }

    #[test]
    fn builders_take_addresses_and_text() {
        let addr: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(addr.into_endpoint(), Ok(Endpoint::Tcp(addr)));
        assert_eq!("127.0.0.1:7".into_endpoint(), Ok(Endpoint::Tcp(addr)));
        assert_eq!(
            String::from("unix:/a").into_endpoint(),
            Ok(Endpoint::unix("/a"))
        );
        assert!("nonsense".into_endpoint().is_err());
    }

    #[test]
    fn bad_text_is_refused_with_the_reason() {
        let err = "unix:".parse::<Endpoint>().unwrap_err();
        assert!(err.to_string().contains("socket path is empty"), "{err}");
        let err = "localhost:80".parse::<Endpoint>().unwrap_err();
        assert!(err.to_string().contains("not a socket address"), "{err}");
    }
}
