//! Parsing and writing the headers that carry time: `grpc-timeout` and a plain
//! milliseconds header. Malformed input is a [`HeaderError`] naming the header, never a
//! panic.
//!
//! ```
//! use std::time::Duration;
//! use palisade_core::headers::{grpc_timeout, millis};
//!
//! assert_eq!(grpc_timeout::parse(b"250m").unwrap(), Duration::from_millis(250));
//! assert_eq!(grpc_timeout::encode_str(Duration::from_secs(2)), "2000000u");
//! assert!(grpc_timeout::parse(b"123456789S").is_err()); // at most 8 digits
//!
//! assert_eq!(millis::parse("x-request-timeout-ms", b"1500").unwrap(), Duration::from_millis(1500));
//! let err = millis::parse("x-request-timeout-ms", b"1.5s").unwrap_err();
//! assert_eq!(err.to_string(), "invalid `x-request-timeout-ms` header: expected a whole number of milliseconds");
//! ```

use std::borrow::Cow;
use std::fmt;

/// A header value that could not be read. Names the header and says what was expected;
/// never echoes the value (it may be anything).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderError {
    header: Cow<'static, str>,
    expected: &'static str,
}

impl HeaderError {
    /// An error for `header`, which should have held `expected`.
    pub fn new(header: impl Into<Cow<'static, str>>, expected: &'static str) -> Self {
        Self {
            header: header.into(),
            expected,
        }
    }

    /// The header's name.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// What a valid value looks like.
    pub fn expected(&self) -> &'static str {
        self.expected
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}` header: {}", self.header, self.expected)
    }
}

impl std::error::Error for HeaderError {}

impl crate::Categorized for HeaderError {
    fn category(&self) -> crate::Category {
        crate::Category::InvalidInput
    }
}

/// Maps with at most this many names are scanned by [`find_pair`] rather than hashed.
#[cfg(feature = "http")]
const SCAN_MAX: usize = 8;

/// The first value of each of two headers, as two [`HeaderMap::get`](http::HeaderMap::get)
/// calls would find them (a `None` name finds nothing).
///
/// A small map (at most 8 names, as requests between services and from load tools
/// usually have) is first scanned once for the names, and a header is looked up by
/// hash only when it is there: a standard name against a custom one differs at the
/// first comparison, while `get` hashes the name it looks for, byte by byte for a
/// custom name such as `grpc-timeout`, which costs more than the scan. Larger maps are
/// looked up by hash straight away.
///
/// ```
/// use http::{HeaderMap, HeaderName, HeaderValue};
/// use palisade_core::headers::find_pair;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(http::header::HOST, HeaderValue::from_static("example.com"));
/// headers.insert("grpc-timeout", HeaderValue::from_static("2S"));
/// let grpc = HeaderName::from_static("grpc-timeout");
/// let ms = HeaderName::from_static("x-request-timeout-ms");
/// let (a, b) = find_pair(&headers, Some(&grpc), Some(&ms));
/// assert_eq!(a.map(|v| v.as_bytes()), Some(&b"2S"[..]));
/// assert_eq!(b, None);
/// ```
#[cfg(feature = "http")]
#[inline]
pub fn find_pair<'h>(
    headers: &'h http::HeaderMap,
    first: Option<&http::HeaderName>,
    second: Option<&http::HeaderName>,
) -> (Option<&'h http::HeaderValue>, Option<&'h http::HeaderValue>) {
    if headers.is_empty() || (first.is_none() && second.is_none()) {
        return (None, None);
    }
    let (mut has_first, mut has_second) = (true, true);
    if headers.keys_len() <= SCAN_MAX {
        // Names only: a header found is then looked up by hash (rare, and cheap next
        // to a lookup of every name on every call).
        (has_first, has_second) = (false, false);
        for name in headers.keys() {
            has_first |= first == Some(name);
            has_second |= second == Some(name);
        }
    }
    (
        first.filter(|_| has_first).and_then(|n| headers.get(n)),
        second.filter(|_| has_second).and_then(|n| headers.get(n)),
    )
}

/// The gRPC `grpc-timeout` header: `TimeoutValue TimeoutUnit`, at most 8 ASCII digits
/// then one of `H` (hours), `M` (minutes), `S` (seconds), `m` (milliseconds),
/// `u` (microseconds), `n` (nanoseconds), as the gRPC over HTTP/2 spec defines it.
pub mod grpc_timeout {
    use std::time::Duration;

    use super::HeaderError;

    /// The header's name.
    pub const NAME: &str = "grpc-timeout";

    /// The largest value the spec allows (8 digits).
    pub const MAX_VALUE: u64 = 99_999_999;

    const EXPECTED: &str = "expected 1 to 8 digits followed by one of H, M, S, m, u, n";

    /// Parses a `grpc-timeout` value. Surrounding ASCII whitespace is ignored.
    pub fn parse(value: &[u8]) -> Result<Duration, HeaderError> {
        let value = value.trim_ascii();
        let err = || HeaderError::new(NAME, EXPECTED);
        let (unit, digits) = value.split_last().ok_or_else(err)?;
        if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        let n = digits
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        let d = match unit {
            b'H' => Duration::from_secs(n * 3600),
            b'M' => Duration::from_secs(n * 60),
            b'S' => Duration::from_secs(n),
            b'm' => Duration::from_millis(n),
            b'u' => Duration::from_micros(n),
            b'n' => Duration::from_nanos(n),
            _ => return Err(err()),
        };
        Ok(d)
    }

    /// Writes `d` in the finest unit whose value fits in 8 digits, rounding down so the
    /// receiver never believes it has more time than the sender gave it. Durations beyond
    /// `99999999H` are written as that.
    pub fn encode_str(d: Duration) -> String {
        let (buf, len) = encode_buf(d);
        String::from_utf8_lossy(&buf[..len]).into_owned()
    }

    /// The encoding, in a stack buffer: at most 8 digits and a unit.
    fn encode_buf(d: Duration) -> ([u8; 9], usize) {
        let (value, unit) = pick_unit(d);
        let mut digits = [0u8; 9];
        let mut n = value;
        let mut i = 8;
        loop {
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
            i -= 1;
        }
        let len = 9 - i;
        let mut out = [0u8; 9];
        out[..len].copy_from_slice(&digits[i..]);
        out[len] = unit;
        (out, len + 1)
    }

    fn pick_unit(d: Duration) -> (u64, u8) {
        let nanos = d.as_nanos();
        let units: [(u128, u8); 6] = [
            (1, b'n'),
            (1_000, b'u'),
            (1_000_000, b'm'),
            (1_000_000_000, b'S'),
            (60_000_000_000, b'M'),
            (3_600_000_000_000, b'H'),
        ];
        for (per, unit) in units {
            let v = nanos / per;
            if v <= u128::from(MAX_VALUE) {
                return (v as u64, unit);
            }
        }
        (MAX_VALUE, b'H')
    }

    /// [`encode_str`] as a header value (one allocation: the value's own storage).
    #[cfg(feature = "http")]
    pub fn encode(d: Duration) -> http::HeaderValue {
        let (buf, len) = encode_buf(d);
        // Only digits and a letter: always a valid header value.
        http::HeaderValue::from_bytes(&buf[..len])
            .unwrap_or_else(|_| http::HeaderValue::from_static("99999999H"))
    }
}

/// A plain header holding a whole number of milliseconds (for HTTP services that carry
/// a deadline without gRPC), such as `x-request-timeout-ms: 1500`.
pub mod millis {
    use std::time::Duration;

    use super::HeaderError;

    const EXPECTED: &str = "expected a whole number of milliseconds";

    /// Parses the value of header `name`: 1 to 19 ASCII digits. Surrounding ASCII
    /// whitespace is ignored.
    pub fn parse(name: &str, value: &[u8]) -> Result<Duration, HeaderError> {
        let value = value.trim_ascii();
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(HeaderError::new(name.to_owned(), EXPECTED));
        }
        let n = value
            .iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        Ok(Duration::from_millis(n))
    }

    /// The largest value written: 19 digits, the most [`parse`] reads.
    pub const MAX_MILLIS: u64 = 9_999_999_999_999_999_999;

    fn clamp(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).map_or(MAX_MILLIS, |ms| ms.min(MAX_MILLIS))
    }

    /// Writes `d` as whole milliseconds, rounded down, at most [`MAX_MILLIS`], so every
    /// value written parses back.
    pub fn encode_str(d: Duration) -> String {
        clamp(d).to_string()
    }

    /// [`encode_str`] as a header value.
    #[cfg(feature = "http")]
    pub fn encode(d: Duration) -> http::HeaderValue {
        http::HeaderValue::from(clamp(d))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grpc_timeout_units() {
        let cases: [(&[u8], Duration); 9] = [
            (b"1H", Duration::from_secs(3600)),
            (b"2M", Duration::from_secs(120)),
            (b"3S", Duration::from_secs(3)),
            (b"4m", Duration::from_millis(4)),
            (b"5u", Duration::from_micros(5)),
            (b"6n", Duration::from_nanos(6)),
            (b"0n", Duration::ZERO),
            (b"99999999H", Duration::from_secs(99_999_999 * 3600)),
            (b" 00000010S ", Duration::from_secs(10)),
        ];
        for (text, want) in cases {
            assert_eq!(grpc_timeout::parse(text).unwrap(), want, "{text:?}");
        }
    }

    #[test]
    fn grpc_timeout_garbage() {
        let bad: [&[u8]; 12] = [
            b"",
            b"S",
            b"10",
            b"10s",
            b"10x",
            b"-1S",
            b"1.5S",
            b"123456789S",
            b"1 S",
            b"\xffS",
            b"1SS",
            b"+1S",
        ];
        for text in bad {
            let err = grpc_timeout::parse(text).unwrap_err();
            assert_eq!(err.header(), "grpc-timeout");
            assert!(err.to_string().starts_with("invalid `grpc-timeout` header"));
        }
    }

    #[test]
    fn grpc_timeout_encoding_picks_the_finest_unit() {
        let cases = [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_nanos(100_000_000), "100000u"),
            (Duration::from_secs(2), "2000000u"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(u64::MAX), "99999999H"),
        ];
        for (d, want) in cases {
            assert_eq!(grpc_timeout::encode_str(d), want, "{d:?}");
            #[cfg(feature = "http")]
            assert_eq!(grpc_timeout::encode(d).to_str().unwrap(), want);
        }
    }

    #[test]
    fn millis_header() {
        assert_eq!(millis::parse("h", b" 0 ").unwrap(), Duration::ZERO);
        assert_eq!(
            millis::parse("h", b"9999999999999999999")
                .unwrap()
                .as_millis(),
            9_999_999_999_999_999_999
        );
        for bad in [
            &b""[..],
            b"-1",
            b"1.0",
            b"1e3",
            b"10ms",
            b"99999999999999999999",
            b"\x00",
        ] {
            let err = millis::parse("x-timeout-ms", bad).unwrap_err();
            assert_eq!(err.header(), "x-timeout-ms", "{bad:?}");
        }
        assert_eq!(millis::encode_str(Duration::from_micros(1999)), "1");
        #[cfg(feature = "http")]
        assert_eq!(
            millis::encode(Duration::from_secs(3)).to_str().unwrap(),
            "3000"
        );
        assert_eq!(
            millis::encode_str(Duration::MAX),
            millis::MAX_MILLIS.to_string()
        );
        let max = millis::encode_str(Duration::MAX);
        assert_eq!(
            millis::parse("x", max.as_bytes()).unwrap(),
            Duration::from_millis(millis::MAX_MILLIS),
            "the largest value written parses back"
        );
    }

    proptest! {
        #[test]
        fn grpc_timeout_round_trips_without_growing(nanos in any::<u64>(), secs in 0u64..=400_000_000_000) {
            for d in [Duration::from_nanos(nanos), Duration::from_secs(secs)] {
                let text = grpc_timeout::encode_str(d);
                prop_assert!(text.len() <= 9, "{text}");
                let back = grpc_timeout::parse(text.as_bytes()).unwrap();
                prop_assert!(back <= d, "{d:?} -> {text} -> {back:?}");
                // Rounded down by less than one unit of the chosen precision: at most
                // 1 part in 10^7 of the value (or below a nanosecond).
                let lost = d - back;
                prop_assert!(lost.as_nanos() * 10_000_000 <= d.as_nanos().max(1) * 10 || d.as_secs() >= 99_999_999 * 3600,
                    "{d:?} -> {text} lost {lost:?}");
            }
        }

        #[test]
        fn grpc_timeout_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = grpc_timeout::parse(&bytes);
            let _ = millis::parse("x", &bytes);
        }

        #[test]
        fn millis_round_trips(ms in 0u64..=u64::MAX / 2) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(millis::parse("x", millis::encode_str(d).as_bytes()).unwrap(), d);
        }

        /// `find_pair` finds what `get` finds, for maps below and above the size at
        /// which it stops scanning, with repeated names, standard and custom.
        #[cfg(feature = "http")]
        #[test]
        fn find_pair_agrees_with_get(
            entries in proptest::collection::vec((0usize..6, 0u8..10), 0..20),
            first in proptest::option::of(0usize..6),
            second in proptest::option::of(0usize..6),
        ) {
            let names = [
                http::header::HOST,
                http::header::ACCEPT,
                http::HeaderName::from_static("grpc-timeout"),
                http::HeaderName::from_static("x-request-timeout-ms"),
                http::HeaderName::from_static("x-client-id"),
                http::header::CONTENT_TYPE,
            ];
            let mut headers = http::HeaderMap::new();
            for (n, v) in &entries {
                headers.append(names[*n].clone(), http::HeaderValue::from(u16::from(*v)));
            }
            let (a, b) = find_pair(&headers, first.map(|i| &names[i]), second.map(|i| &names[i]));
            prop_assert_eq!(a, first.and_then(|i| headers.get(&names[i])));
            prop_assert_eq!(b, second.and_then(|i| headers.get(&names[i])));
        }
    }
}
