//! Built-in checks: TCP connect, HTTP GET, a value within bounds, and flap damping for
//! any check. Closures and [`HealthIndicator`](palisade_core::HealthIndicator)s are in
//! the crate root ([`check_fn`](crate::check_fn), [`IndicatorCheck`](crate::IndicatorCheck)).

mod damped;
mod http;
mod tcp;
mod threshold;

pub use damped::Damped;
pub use http::HttpCheck;
pub use tcp::TcpCheck;
pub use threshold::Threshold;

/// Milliseconds, with microsecond precision, for `observedValue`.
pub(crate) fn millis(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}
