//! The naming rules of the protocol, shared by the macros (at compile time) and the runtime
//! (at run time): the mDNS service type of a runtime name, proto identifiers and case
//! conversion, field-number limits, the names a runtime's `.proto` adds next to the user's
//! series types, and the FNV-1a hash behind schema fingerprints and shortened service types.
//!
//! ```
//! use tsercom_proto::names;
//!
//! assert_eq!(names::service_type("Weather_Station")?, "_weather-station._tcp.local.");
//! assert_eq!(names::snake_case("CommandKind"), "command_kind");
//! assert_eq!(names::camel_case("get_reading"), "GetReading");
//! # Ok::<(), names::NameError>(())
//! ```

use std::fmt;

/// RFC 6763 §7.2: a service name has at most 15 bytes (without `_` and `._tcp`).
pub const MAX_SERVICE_NAME_LEN: usize = 15;

/// The largest field number protobuf allows.
pub const MAX_TAG: u32 = 536_870_911;

/// Field numbers reserved by the protobuf implementation.
pub const IMPLEMENTATION_RESERVED: std::ops::RangeInclusive<u32> = 19_000..=19_999;

/// The messages and services a runtime's `.proto` file defines next to its series types (in
/// the runtime's package): a series type of that package must not use these names.
pub const GENERATED_NAMES: &[&str] = &[
    DATA_SAMPLE,
    DATA_FRAME,
    EVENT_SAMPLE,
    EVENT_FRAME,
    SOURCE_ENVELOPE,
    AGGREGATOR_ENVELOPE,
    STREAM_SERVICE,
];

/// `tsercom.Sample` with a typed data payload.
pub const DATA_SAMPLE: &str = "DataSample";
/// `tsercom.Frame` of [`DATA_SAMPLE`]s.
pub const DATA_FRAME: &str = "DataFrame";
/// `tsercom.Sample` with a typed event payload.
pub const EVENT_SAMPLE: &str = "EventSample";
/// `tsercom.Frame` of [`EVENT_SAMPLE`]s.
pub const EVENT_FRAME: &str = "EventFrame";
/// `tsercom.Envelope` as a source sends it (data frames).
pub const SOURCE_ENVELOPE: &str = "SourceEnvelope";
/// `tsercom.Envelope` as an aggregator sends it (event frames).
pub const AGGREGATOR_ENVELOPE: &str = "AggregatorEnvelope";
/// The typed `tsercom.TsercomStream` service of a runtime.
pub const STREAM_SERVICE: &str = "Stream";

/// The message a proto enum travels in when it is a series value of its own (a data, event
/// or rpc type): `pkg.Command` -> `pkg.CommandMessage`, defined as
/// `message CommandMessage { Command value = 1; }`.
pub fn enum_message_name(enum_full_name: &str) -> String {
    format!("{enum_full_name}Message")
}

/// Why a runtime name cannot be turned into an mDNS service type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameError(pub &'static str);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NameError {}

/// Normalises a runtime name into the mDNS service type `_<name>._tcp.local.`.
///
/// Publisher and listener (and the macro, for `SERVICE_TYPE`) all call this, so they always
/// agree. The name is lowercased, `_` becomes `-`, runs of `-` collapse into one and
/// leading/trailing `-` are dropped. Only ASCII letters, digits, `_` and `-` are accepted,
/// and at least one letter must remain.
///
/// A name longer than [`MAX_SERVICE_NAME_LEN`] is shortened deterministically to its first
/// 10 characters, `-` and 4 hex digits of an FNV-1a hash of the whole normalised name (for
/// example `temperature_readings` becomes `_temperatur-XXXX._tcp.local.`), so two long names
/// that share a prefix still get different service types. Shorter names are used as they
/// are, which keeps them interoperable with Python tsercom peers.
pub fn service_type(runtime_name: &str) -> Result<String, NameError> {
    if runtime_name.is_empty() {
        return Err(NameError("the name is empty"));
    }
    if runtime_name.len() > 255 {
        return Err(NameError("the name is longer than 255 bytes"));
    }
    let mut name = String::with_capacity(runtime_name.len());
    for c in runtime_name.chars() {
        let c = match c {
            'a'..='z' | '0'..='9' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            '_' | '-' => '-',
            _ => {
                return Err(NameError(
                    "only ASCII letters, digits, '_' and '-' are allowed",
                ))
            }
        };
        if c == '-' && (name.is_empty() || name.ends_with('-')) {
            continue;
        }
        name.push(c);
    }
    while name.ends_with('-') {
        name.pop();
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        return Err(NameError("the name must contain at least one letter"));
    }
    if name.len() > MAX_SERVICE_NAME_LEN {
        let mut h = Fnv1a64::new();
        h.write(name.as_bytes());
        let mut prefix: String = name.chars().take(10).collect();
        while prefix.ends_with('-') {
            prefix.pop();
        }
        name = format!("{prefix}-{:04x}", h.finish() & 0xffff);
    }
    Ok(format!("_{name}._tcp.local."))
}

/// Whether `s` is a protobuf identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` is a package name: identifiers separated by dots.
pub fn is_package(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_ident)
}

/// `CommandKind` -> `command_kind`; `already_snake` stays; `HTTPServer` -> `http_server`.
pub fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|p| chars.get(p));
            let prev_lower = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            let prev_upper = prev.is_some_and(|p| p.is_ascii_uppercase());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if (prev_lower || (prev_upper && next_lower)) && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

/// `CommandKind` -> `COMMAND_KIND` (proto enum value prefixes).
pub fn screaming_snake_case(s: &str) -> String {
    snake_case(s).to_ascii_uppercase()
}

/// `get_reading` -> `GetReading` (proto method names).
pub fn camel_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut upper = true;
    for c in s.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The FNV-1a 64-bit hash: small, stable across builds and platforms.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a64(u64);

impl Fnv1a64 {
    /// A new hasher.
    pub const fn new() -> Self {
        Fnv1a64(0xcbf2_9ce4_8422_2325)
    }

    /// Feeds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a64 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_types() {
        assert_eq!(
            service_type("weather").as_deref(),
            Ok("_weather._tcp.local.")
        );
        assert_eq!(
            service_type("Lab__Inst_").as_deref(),
            Ok("_lab-inst._tcp.local.")
        );
        assert_eq!(service_type("__a__b__").as_deref(), Ok("_a-b._tcp.local."));
        assert!(service_type("_1").is_err());
        assert!(service_type("").is_err());
        assert!(service_type("a.b").is_err());
        let long = service_type("temperature_readings").unwrap_or_default();
        assert!(long.starts_with("_temperatur-"), "{long}");
        assert_eq!(long.len(), "_temperatur-abcd._tcp.local.".len());
        assert_ne!(
            service_type("temperature_readings_a"),
            service_type("temperature_readings_b")
        );
    }

    #[test]
    fn cases() {
        assert_eq!(snake_case("CommandKind"), "command_kind");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("SetRate2"), "set_rate2");
        assert_eq!(screaming_snake_case("Calibrate"), "CALIBRATE");
        assert_eq!(camel_case("get_reading"), "GetReading");
        assert_eq!(camel_case("latest"), "Latest");
        assert_eq!(camel_case("getX"), "GetX");
        assert!(is_package("a.b_c"));
        assert!(!is_package("a..b"));
        assert!(!is_ident("1a"));
    }

    #[test]
    fn fnv_known_values() {
        let mut h = Fnv1a64::new();
        h.write(b"");
        assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv1a64::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
