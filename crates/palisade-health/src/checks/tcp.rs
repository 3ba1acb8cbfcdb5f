use std::borrow::Cow;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::check::{Check, CheckResult};

/// Passes when a TCP connection to an address can be opened (then closed at once).
/// Observes the connect time in milliseconds. The registry's timeout bounds the
/// connect (and a name lookup, for a host name).
///
/// ```
/// use palisade_health::checks::TcpCheck;
/// let redis = TcpCheck::new("127.0.0.1:6379");
/// assert_eq!(redis.addr(), "127.0.0.1:6379");
/// ```
#[derive(Clone, Debug)]
pub struct TcpCheck {
    addr: Cow<'static, str>,
}

impl TcpCheck {
    /// A check of `addr` (`host:port`).
    pub fn new(addr: impl Into<Cow<'static, str>>) -> Self {
        Self { addr: addr.into() }
    }

    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Check for TcpCheck {
    async fn check(&self) -> CheckResult {
        let start = Instant::now();
        let result = match TcpStream::connect(&*self.addr).await {
            Ok(_stream) => CheckResult::pass(),
            Err(e) => CheckResult::fail(format!("connect to {}: {e}", self.addr)),
        };
        result.observed(super::millis(start.elapsed()), "ms")
    }
}
