//! TXT record encoding and strict decoding.

use crate::ids::CallerId;
use crate::time::Timestamp;

use std::path::PathBuf;

use super::{
    Advertisement, TXT_CALLER_ID, TXT_HOST, TXT_NAME, TXT_PROTO, TXT_PUBLISHED_ON, TXT_SCHEMA,
    TXT_TLS, TXT_UNIX,
};
use crate::transport::same_host::{is_host_identity, MAX_SOCKET_PATH};

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;
/// The longest TXT value we accept (a TXT string is at most 255 bytes including the key).
const MAX_VALUE_LEN: usize = 255;

/// Formats `t` as the reference writes `published_on`: `YYYY-MM-DD HH:MM:SS.ffffff`, UTC.
///
/// Sub-microsecond digits are truncated; years outside 0000..=9999 are clamped.
pub fn format_published_on(t: Timestamp) -> String {
    let nanos = t.as_nanos();
    let secs = nanos.div_euclid(NANOS_PER_SEC);
    let micros = nanos.rem_euclid(NANOS_PER_SEC) / 1_000;
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let (y, m, d, sod, micros) = if y < 0 {
        (0, 1, 1, 0, 0)
    } else if y > 9999 {
        (9999, 12, 31, SECS_PER_DAY - 1, 999_999)
    } else {
        (y, m, d, sod, micros)
    };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses a `published_on` value, `YYYY-MM-DD HH:MM:SS[.f{1,9}]`, as UTC. Strict: any
/// other shape, or an impossible date or time, is `None`.
pub fn parse_published_on(text: &str) -> Option<Timestamp> {
    let b = text.as_bytes();
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    let mut frac_nanos = 0;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 || b.len() > 29 {
            return None;
        }
        let digits = b.len() - 20;
        frac_nanos = num(20..b.len())? * 10i64.pow(9 - digits as u32);
    }
    let secs = days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + s;
    Some(Timestamp::from_nanos(
        secs.checked_mul(NANOS_PER_SEC)?.checked_add(frac_nanos)?,
    ))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The TXT properties of an advertisement, as `(key, value)` pairs.
pub(crate) fn encode(
    name: Option<&str>,
    published_on: Timestamp,
    caller_id: CallerId,
    schema: Option<u64>,
    proto: u32,
    requires_tls: bool,
) -> Vec<(String, String)> {
    let mut props = vec![
        (
            TXT_PUBLISHED_ON.to_owned(),
            format_published_on(published_on),
        ),
        (TXT_CALLER_ID.to_owned(), caller_id.to_string()),
        (TXT_PROTO.to_owned(), proto.to_string()),
    ];
    if let Some(name) = name {
        props.push((TXT_NAME.to_owned(), name.to_owned()));
    }
    if let Some(schema) = schema {
        props.push((TXT_SCHEMA.to_owned(), format!("{schema:016x}")));
    }
    if requires_tls {
        props.push((TXT_TLS.to_owned(), "1".to_owned()));
    }
    props
}

/// The same-host TXT properties of an advertisement (`host`, `unix`), if it has them.
pub(crate) fn same_host(ad: &Advertisement) -> Vec<(String, String)> {
    match &ad.same_host {
        Some((host, socket)) => vec![
            (TXT_HOST.to_owned(), host.clone()),
            (TXT_UNIX.to_owned(), socket.display().to_string()),
        ],
        None => Vec::new(),
    }
}

/// The decoded TXT metadata of an instance.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub(crate) caller_id: Option<CallerId>,
    pub(crate) name: Option<String>,
    pub(crate) schema: Option<u64>,
    pub(crate) protocol_version: Option<u32>,
    pub(crate) published_on: Option<Timestamp>,
    pub(crate) requires_tls: bool,
    pub(crate) host: Option<String>,
    pub(crate) unix_socket: Option<PathBuf>,
}

/// Decodes TXT properties strictly. A bad value of an optional key drops that key with a
/// logged reason; a present but bad `caller_id` rejects the whole instance (`Err(reason)`),
/// since it cannot be identified.
pub(crate) fn decode<'a>(
    instance: &str,
    props: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Result<Decoded, String> {
    let mut out = Decoded::default();
    for (key, val) in props {
        let key_lc = key.to_ascii_lowercase();
        let known = matches!(
            key_lc.as_str(),
            TXT_CALLER_ID
                | TXT_NAME
                | TXT_SCHEMA
                | TXT_PROTO
                | TXT_PUBLISHED_ON
                | TXT_TLS
                | TXT_HOST
                | TXT_UNIX
        );
        if !known {
            continue;
        }
        let text = match val {
            None => Err("has no value".to_owned()),
            Some(v) if v.len() > MAX_VALUE_LEN => Err(format!("is {} bytes long", v.len())),
            Some(v) => std::str::from_utf8(v).map_err(|_| "is not UTF-8".to_owned()),
        };
        let result: Result<(), String> = text.and_then(|text| match key_lc.as_str() {
            TXT_CALLER_ID => CallerId::parse(text)
                .map(|id| out.caller_id = Some(id))
                .map_err(|e| e.to_string()),
            TXT_NAME => {
                out.name = Some(text.to_owned());
                Ok(())
            }
            TXT_SCHEMA => {
                if text.len() == 16 && text.bytes().all(|c| c.is_ascii_hexdigit()) {
                    u64::from_str_radix(text, 16)
                        .map(|v| out.schema = Some(v))
                        .map_err(|e| e.to_string())
                } else {
                    Err(format!("{text:?} is not 16 hex digits"))
                }
            }
            TXT_TLS => match text {
                "1" => {
                    out.requires_tls = true;
                    Ok(())
                }
                "0" => Ok(()),
                _ => Err(format!("{text:?} is neither 1 nor 0")),
            },
            TXT_HOST => {
                if is_host_identity(text) {
                    out.host = Some(text.to_owned());
                    Ok(())
                } else {
                    Err(format!("{text:?} is not 32 lowercase hex digits"))
                }
            }
            TXT_UNIX => {
                let path = PathBuf::from(text);
                if path.is_absolute() && text.len() <= MAX_SOCKET_PATH {
                    out.unix_socket = Some(path);
                    Ok(())
                } else {
                    Err(format!(
                        "{text:?} is not an absolute socket path of at most {MAX_SOCKET_PATH} bytes"
                    ))
                }
            }
            TXT_PROTO => text
                .parse::<u32>()
                .map(|v| out.protocol_version = Some(v))
                .map_err(|_| format!("{text:?} is not a protocol version")),
            _ => parse_published_on(text)
                .map(|t| out.published_on = Some(t))
                .ok_or_else(|| format!("{text:?} is not YYYY-MM-DD HH:MM:SS.ffffff")),
        });
        if let Err(reason) = result {
            if key_lc == TXT_CALLER_ID {
                return Err(format!("TXT key {key:?} {reason}"));
            }
            tracing::warn!(instance, key, %reason, "discovery: ignoring malformed TXT value");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_on_round_trips() {
        let t = Timestamp::from_nanos(1_764_099_045_123_456_789);
        let s = format_published_on(t);
        assert_eq!(s, "2025-11-25 19:30:45.123456");
        assert_eq!(
            parse_published_on(&s),
            Some(Timestamp::from_nanos(1_764_099_045_123_456_000))
        );
        assert_eq!(
            format_published_on(Timestamp::UNIX_EPOCH),
            "1970-01-01 00:00:00.000000"
        );
        assert_eq!(
            parse_published_on("2024-02-29 23:59:59"),
            Some(Timestamp::from_nanos(1_709_251_199 * NANOS_PER_SEC))
        );
        for bad in [
            "",
            "2023-02-29 00:00:00.0",
            "2024-13-01 00:00:00",
            "2024-01-01T00:00:00",
            "2024-01-01 00:00:00.",
            "2024-01-01 24:00:00",
            "2024-01-01 00:00:00.1234567890",
            "+024-01-01 00:00:00",
        ] {
            assert_eq!(parse_published_on(bad), None, "{bad}");
        }
    }

    #[test]
    fn decode_is_strict() {
        let id = CallerId::random().to_string();
        let ok = decode(
            "x",
            [
                ("caller_id", Some(id.as_bytes())),
                ("schema", Some(b"00000000000000ff".as_slice())),
                ("proto", Some(b"1".as_slice())),
                ("name", Some(b"n".as_slice())),
            ],
        );
        let ok = ok.unwrap_or_default();
        assert!(!ok.requires_tls);
        assert_eq!(ok.schema, Some(255));
        assert_eq!(ok.protocol_version, Some(1));
        assert_eq!(ok.name.as_deref(), Some("n"));
        let bad = decode(
            "x",
            [
                ("name", Some(b"\xff\xfe".as_slice())),
                ("schema", Some(b"zz".as_slice())),
                ("proto", Some(b"-1".as_slice())),
                ("published_on", None),
            ],
        );
        assert_eq!(bad, Ok(Decoded::default()));
        assert!(decode("x", [("caller_id", Some(b"not-a-uuid".as_slice()))]).is_err());
        // tls=1 is read; anything but 1 or 0 is dropped (plain text assumed, logged).
        let tls = decode("x", [("TLS", Some(b"1".as_slice()))]).unwrap_or_default();
        assert!(tls.requires_tls);
        for bad in [b"yes".as_slice(), b"", b"2"] {
            let d = decode("x", [("tls", Some(bad))]).unwrap_or_default();
            assert!(!d.requires_tls);
        }
        let props = encode(
            None,
            Timestamp::UNIX_EPOCH,
            CallerId::random(),
            None,
            1,
            true,
        );
        assert!(props.contains(&("tls".to_owned(), "1".to_owned())));
        let props = encode(
            None,
            Timestamp::UNIX_EPOCH,
            CallerId::random(),
            None,
            1,
            false,
        );
        assert!(props.iter().all(|(k, _)| k != "tls"));
        assert!(decode("x", [("caller_id", Some(b"\xff".as_slice()))]).is_err());
    }

    #[test]
    fn same_host_keys_round_trip_and_bad_values_are_dropped() {
        let host = "0123456789abcdef0123456789abcdef";
        let ad = Advertisement::new("rt", CallerId::random(), 1).same_host(
            host.to_owned(),
            PathBuf::from("/run/user/1/tsercom-1-1.sock"),
        );
        let props = same_host(&ad);
        let d = decode(
            "x",
            props.iter().map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
        )
        .unwrap_or_default();
        assert_eq!(d.host.as_deref(), Some(host));
        assert_eq!(
            d.unix_socket,
            Some(PathBuf::from("/run/user/1/tsercom-1-1.sock"))
        );
        let long = format!("/{}", "a".repeat(MAX_SOCKET_PATH));
        for (key, bad) in [
            ("host", "ABCDEF"),
            ("host", "0123456789ABCDEF0123456789ABCDEF"),
            ("unix", "relative.sock"),
            ("unix", long.as_str()),
        ] {
            let d = decode("x", [(key, Some(bad.as_bytes()))]).unwrap_or_default();
            assert_eq!(d, Decoded::default(), "{key}={bad}");
        }
    }
}
