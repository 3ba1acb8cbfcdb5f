//! Key extractors: which bucket a request is counted in.
//!
//! A keyed limiter asks its extractor for each request's key and keeps one bucket per
//! key. Built in: [`ClientIp`] (the socket address, or a forwarding header when the
//! peer is a trusted proxy), [`HeaderKey`] (any header's value), [`ApiKey`] (an API key
//! header or a bearer token) and [`key_fn`] (a closure). [`Global`] puts every request
//! in one bucket. A request for which the extractor finds no key is counted in the
//! limiter's shared overflow bucket.
//!
//! Two traits, so that the key's type does not depend on the request's:
//! [`KeyExtractor`] names the key type, [`ExtractKey`] reads it from a request.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};

use crate::config::ConfigError;

/// Names the type of the keys an extractor produces.
pub trait KeyExtractor {
    /// The key: hashed and compared to find the request's bucket.
    type Key: Hash + Eq + Send + Sync + 'static;
}

/// Reads a request's key. `None` counts the request in the shared overflow bucket.
pub trait ExtractKey<Req>: KeyExtractor {
    /// The request's key, if it has one.
    fn extract(&self, request: &Req) -> Option<Self::Key>;
}

/// One bucket for every request: an unkeyed limiter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Global;

impl KeyExtractor for Global {
    type Key = ();
}

impl<Req> ExtractKey<Req> for Global {
    #[inline]
    fn extract(&self, _: &Req) -> Option<()> {
        Some(())
    }
}

/// A key extractor from a closure `Fn(&Req) -> Option<K>`; made by [`key_fn`].
pub struct KeyFn<F, K> {
    f: F,
    _key: PhantomData<fn() -> K>,
}

/// Keys requests with a closure. Annotate the closure's argument so the request type is
/// known:
///
/// ```
/// use palisade_ratelimit::key::{ExtractKey, key_fn};
///
/// struct Job { tenant: u32 }
/// let by_tenant = key_fn(|job: &Job| Some(job.tenant));
/// assert_eq!(by_tenant.extract(&Job { tenant: 7 }), Some(7));
/// ```
pub fn key_fn<Req, K, F>(f: F) -> KeyFn<F, K>
where
    F: Fn(&Req) -> Option<K>,
{
    KeyFn {
        f,
        _key: PhantomData,
    }
}

impl<F: Clone, K> Clone for KeyFn<F, K> {
    fn clone(&self) -> Self {
        Self {
            f: self.f.clone(),
            _key: PhantomData,
        }
    }
}

impl<F, K> fmt::Debug for KeyFn<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<F, K: Hash + Eq + Send + Sync + 'static> KeyExtractor for KeyFn<F, K> {
    type Key = K;
}

impl<Req, F, K> ExtractKey<Req> for KeyFn<F, K>
where
    F: Fn(&Req) -> Option<K>,
    K: Hash + Eq + Send + Sync + 'static,
{
    #[inline]
    fn extract(&self, request: &Req) -> Option<K> {
        (self.f)(request)
    }
}

const INLINE: usize = 62;

/// The bytes of a header value, kept inline up to 62 bytes so that reading a key
/// allocates nothing (longer values go on the heap). Owned: a key never keeps the
/// request's buffers alive.
#[derive(Clone)]
pub struct KeyBytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    /// A key holding a copy of `bytes`.
    pub fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            #[allow(clippy::cast_possible_truncation)] // len ≤ 62
            Self(Repr::Inline {
                len: bytes.len() as u8,
                buf,
            })
        } else {
            Self(Repr::Heap(bytes.into()))
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len)],
            Repr::Heap(b) => b,
        }
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for KeyBytes {}

impl Hash for KeyBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

impl From<&str> for KeyBytes {
    fn from(s: &str) -> Self {
        Self::new(s.as_bytes())
    }
}

/// Keys requests by the value of one header; requests without it have no key.
#[derive(Clone, Debug)]
pub struct HeaderKey {
    name: HeaderName,
}

impl HeaderKey {
    /// Keys by header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name }
    }
}

impl KeyExtractor for HeaderKey {
    type Key = KeyBytes;
}

impl<B> ExtractKey<http::Request<B>> for HeaderKey {
    #[inline]
    fn extract(&self, request: &http::Request<B>) -> Option<KeyBytes> {
        request
            .headers()
            .get(&self.name)
            .map(|v| KeyBytes::new(v.as_bytes()))
    }
}

/// Keys requests by API key: a header (`x-api-key` by default) or the token of
/// `Authorization: Bearer <token>`. Requests without one have no key.
///
/// The key is only read, not checked: put the limiter after authentication if unknown
/// keys must not get buckets of their own (or use `max_keys` to bound them).
#[derive(Clone, Debug)]
pub struct ApiKey {
    header: HeaderName,
    bearer: bool,
}

impl ApiKey {
    /// Keys by the `x-api-key` header.
    pub fn new() -> Self {
        Self::header(HeaderName::from_static("x-api-key"))
    }

    /// Keys by the value of header `name`.
    pub fn header(name: HeaderName) -> Self {
        Self {
            header: name,
            bearer: false,
        }
    }

    /// Keys by the token of `Authorization: Bearer <token>`.
    pub fn bearer() -> Self {
        Self {
            header: http::header::AUTHORIZATION,
            bearer: true,
        }
    }
}

impl Default for ApiKey {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyExtractor for ApiKey {
    type Key = KeyBytes;
}

impl<B> ExtractKey<http::Request<B>> for ApiKey {
    fn extract(&self, request: &http::Request<B>) -> Option<KeyBytes> {
        let value = request.headers().get(&self.header)?.as_bytes();
        let token = if self.bearer {
            let (scheme, rest) = value.split_at_checked(7)?;
            if !scheme.eq_ignore_ascii_case(b"bearer ") {
                return None;
            }
            rest.trim_ascii()
        } else {
            value.trim_ascii()
        };
        (!token.is_empty()).then(|| KeyBytes::new(token))
    }
}

/// An IP address range in CIDR notation: `10.0.0.0/8`, `fd00::/8`, or a single address.
///
/// ```
/// use palisade_ratelimit::key::Cidr;
/// let lan: Cidr = "192.168.0.0/16".parse().unwrap();
/// assert!(lan.contains("192.168.4.2".parse().unwrap()));
/// assert!(lan.contains("::ffff:192.168.4.2".parse().unwrap()), "IPv4-mapped IPv6");
/// assert!(!lan.contains("10.0.0.1".parse().unwrap()));
/// assert_eq!("10.0.0.0/33".parse::<Cidr>().unwrap_err(), "prefix length too long for the address");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `addr`'s first `prefix` bits (host bits are cleared).
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, &'static str> {
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err("prefix length too long for the address");
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask128(prefix))),
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                ip.to_bits() & mask32(self.prefix) == net.to_bits()
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask128(self.prefix) == net.to_bits()
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty range");
        }
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| "not an IP address")?;
        let prefix = match prefix {
            None => {
                if addr.to_canonical().is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse()
                .map_err(|_| "prefix length too long for the address")?,
            Some(_) => return Err("prefix length is not a number"),
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Keys requests by client IP address.
///
/// The peer's address comes from the request's extensions: axum's
/// `ConnectInfo<SocketAddr>` (feature `axum`; serve with
/// `into_make_service_with_connect_info::<SocketAddr>()`), or a plain `SocketAddr`
/// put there by your server. Requests with neither have no key.
///
/// **Forwarding headers are believed only from trusted proxies.** Anyone can send
/// `X-Forwarded-For`; when the peer is not in the trusted list the header is ignored
/// and the peer's address is the key. When the peer is trusted, the hops of
/// `Forwarded` (RFC 7239, `for=`; preferred when present) or else `X-Forwarded-For` are
/// walked right to left, skipping trusted proxies: the first untrusted hop is the
/// client (if every hop is trusted, the leftmost). A header that does not parse (bad
/// address, `unknown`, obfuscated identifier, not UTF-8) never panics: the peer's
/// address is used.
///
/// ```
/// use std::net::SocketAddr;
/// use palisade_ratelimit::key::{ClientIp, ExtractKey};
///
/// let ip = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
/// let mut req = http::Request::builder()
///     .header("x-forwarded-for", "203.0.113.9, 10.1.2.3")
///     .body(())
///     .unwrap();
/// req.extensions_mut().insert("10.0.0.5:40000".parse::<SocketAddr>().unwrap());
/// assert_eq!(ip.extract(&req), Some("203.0.113.9".parse().unwrap()));
///
/// let err = ClientIp::trusting(["10.0.0.0/8", "10.0.0.0/99"]).unwrap_err();
/// assert_eq!(err.to_string(), "trusted_proxies[1]: prefix length too long for the address: \"10.0.0.0/99\"");
/// ```
#[derive(Clone, Debug, Default)]
pub struct ClientIp {
    trusted: Arc<[Cidr]>,
}

static FORWARDED: HeaderName = http::header::FORWARDED;
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

impl ClientIp {
    /// Keys by the peer's address; forwarding headers are never believed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Believes forwarding headers from peers in `ranges` (CIDR, e.g. `10.0.0.0/8`, or
    /// single addresses). The error names the entry that does not parse.
    pub fn trusting<I>(ranges: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let trusted = ranges
            .into_iter()
            .enumerate()
            .map(|(index, r)| {
                r.as_ref()
                    .parse::<Cidr>()
                    .map_err(|reason| ConfigError::Parse {
                        field: "trusted_proxies",
                        index,
                        value: r.as_ref().to_owned(),
                        reason,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            trusted: trusted.into(),
        })
    }

    /// Believes forwarding headers from peers in `ranges`.
    pub fn with_trusted(ranges: impl IntoIterator<Item = Cidr>) -> Self {
        Self {
            trusted: ranges.into_iter().collect(),
        }
    }

    /// The trusted proxy ranges.
    pub fn trusted(&self) -> &[Cidr] {
        &self.trusted
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let walk = if headers.contains_key(&FORWARDED) {
            self.walk(headers, &FORWARDED, forwarded_hops)
        } else {
            self.walk(headers, &X_FORWARDED_FOR, xff_hops)
        };
        walk.unwrap_or(peer)
    }

    /// Walks the hops of every `name` header line, right to left. `None` when there
    /// are none or one does not parse.
    fn walk(
        &self,
        headers: &HeaderMap,
        name: &HeaderName,
        hops: fn(&str) -> Option<Vec<&str>>,
    ) -> Option<IpAddr> {
        let mut leftmost = None;
        for value in headers.get_all(name).iter().rev() {
            let value = value.to_str().ok()?;
            for hop in hops(value)?.into_iter().rev() {
                let ip = parse_hop(hop)?;
                if !self.is_trusted(ip) {
                    return Some(ip);
                }
                leftmost = Some(ip);
            }
        }
        leftmost
    }
}

/// `X-Forwarded-For: client, proxy1, proxy2`.
fn xff_hops(value: &str) -> Option<Vec<&str>> {
    Some(value.split(',').map(str::trim).collect())
}

/// `Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::1]:4711"`.
/// An element without `for=` does not parse.
fn forwarded_hops(value: &str) -> Option<Vec<&str>> {
    value
        .split(',')
        .map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| v.trim().trim_matches('"'))
            })
        })
        .collect()
}

/// An address, with or without a port, IPv6 with or without brackets.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .parse::<Ipv6Addr>()
        .ok()
        .map(|ip| IpAddr::V6(ip).to_canonical())
}

impl KeyExtractor for ClientIp {
    type Key = IpAddr;
}

/// The peer's address from a request's extensions.
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    extensions.get::<SocketAddr>().copied()
}

impl<B> ExtractKey<http::Request<B>> for ClientIp {
    fn extract(&self, request: &http::Request<B>) -> Option<IpAddr> {
        let peer = peer_addr(request.extensions())?;
        Some(self.client_ip(peer.ip(), request.headers()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("1.2.3.4")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        let host: Cidr = "::1".parse().unwrap();
        assert!(host.contains(ip("::1")));
        let mapped: Cidr = "::ffff:10.0.0.0/8"
            .parse()
            .unwrap_or_else(|_| "10.0.0.0/8".parse().unwrap());
        assert!(mapped.contains(ip("10.0.0.1")));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0/8",
            "::1/129",
            "1.2.3.4/33",
            "a/8",
            "10.0.0.0/-1",
            "10.0.0.0/999999999999",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn untrusted_peers_are_not_believed() {
        let c = ClientIp::new();
        let h = headers(&[("x-forwarded-for", b"1.1.1.1")]);
        assert_eq!(c.client_ip(ip("9.9.9.9"), &h), ip("9.9.9.9"));
    }

    #[test]
    fn walks_right_to_left_skipping_trusted() {
        let c = ClientIp::trusting(["10.0.0.0/8", "192.168.0.1"]).unwrap();
        let peer = ip("10.0.0.1");
        let h = headers(&[(
            "x-forwarded-for",
            b"6.6.6.6, 203.0.113.7, 192.168.0.1, 10.2.2.2",
        )]);
        assert_eq!(
            c.client_ip(peer, &h),
            ip("203.0.113.7"),
            "spoofed left part ignored"
        );
        let h = headers(&[
            ("x-forwarded-for", b"6.6.6.6"),
            ("x-forwarded-for", b"203.0.113.7:443, 10.2.2.2"),
        ]);
        assert_eq!(
            c.client_ip(peer, &h),
            ip("203.0.113.7"),
            "several lines, ports"
        );
        let h = headers(&[("x-forwarded-for", b"10.9.9.9, 10.2.2.2")]);
        assert_eq!(
            c.client_ip(peer, &h),
            ip("10.9.9.9"),
            "all trusted: leftmost"
        );
        assert_eq!(c.client_ip(peer, &HeaderMap::new()), peer, "no header");
        let h = headers(&[
            (
                "forwarded",
                b"for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.2.2.2;by=10.0.0.1",
            ),
            ("x-forwarded-for", b"5.5.5.5"),
        ]);
        assert_eq!(
            c.client_ip(peer, &h),
            ip("2001:db8::7"),
            "Forwarded preferred"
        );
        let h = headers(&[("x-forwarded-for", b"::ffff:203.0.113.7")]);
        assert_eq!(c.client_ip(ip("::ffff:10.0.0.1"), &h), ip("203.0.113.7"));
    }

    #[test]
    fn malformed_headers_fall_back_to_the_peer() {
        let c = ClientIp::trusting(["10.0.0.0/8"]).unwrap();
        let peer = ip("10.0.0.1");
        let cases: [&[u8]; 8] = [
            b"not-an-ip",
            b"1.2.3.4, , 10.0.0.2",
            b"",
            b",,,",
            b"1.2.3.4, garbage",
            b"[::1",
            b"\xff\xfe",
            b"999.1.1.1",
        ];
        for v in cases {
            let h = headers(&[("x-forwarded-for", v)]);
            assert_eq!(
                c.client_ip(peer, &h),
                peer,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
        for v in [
            &b"for=unknown"[..],
            b"for=_hidden",
            b"proto=http",
            b"for",
            b"by=1.2.3.4;for=\"\"",
        ] {
            let h = headers(&[("forwarded", v)]);
            assert_eq!(
                c.client_ip(peer, &h),
                peer,
                "{:?}",
                String::from_utf8_lossy(v)
            );
        }
    }

    #[test]
    fn header_and_api_keys() {
        let req = http::Request::builder()
            .header("x-client-id", "alice")
            .header("authorization", "Bearer  tok-1 ")
            .header("x-api-key", "k1")
            .body(())
            .unwrap();
        let h = HeaderKey::new(HeaderName::from_static("x-client-id"));
        assert_eq!(h.extract(&req), Some(KeyBytes::from("alice")));
        assert_eq!(ApiKey::new().extract(&req), Some(KeyBytes::from("k1")));
        assert_eq!(
            ApiKey::bearer().extract(&req),
            Some(KeyBytes::from("tok-1"))
        );
        let none = http::Request::builder()
            .header("authorization", "Basic x")
            .body(())
            .unwrap();
        assert_eq!(ApiKey::bearer().extract(&none), None);
        assert_eq!(h.extract(&none), None);
        let long = "x".repeat(200);
        assert_eq!(KeyBytes::new(long.as_bytes()).as_bytes(), long.as_bytes());
        assert_eq!(format!("{:?}", KeyBytes::from("a")), "\"a\"");
    }

    #[test]
    fn peer_from_extensions() {
        let c = ClientIp::new();
        let mut req = http::Request::new(());
        assert_eq!(c.extract(&req), None);
        req.extensions_mut()
            .insert("1.2.3.4:5".parse::<SocketAddr>().unwrap());
        assert_eq!(c.extract(&req), Some(ip("1.2.3.4")));
    }
}
