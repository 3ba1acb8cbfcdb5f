//! The errors the deadline layers fail with.
//!
//! [`DeadlineExceeded`] (and its [`DeadlineSource`]) and [`HeaderError`] live in
//! [`palisade_core`] so any Palisade classifier, and
//! [`palisade_core::rejection::error_response`], can recognise them inside a
//! [`BoxError`] without depending on this crate. They are re-exported here.
//!
//! | error | when | category | HTTP |
//! |---|---|---|---|
//! | [`DeadlineExceeded`] | the deadline passed before the inner service answered, or had passed on arrival | `Transient` | 504 |
//! | [`HeaderError`] | an inbound deadline header could not be read and the layer is set to [`MalformedHeader::Reject`](crate::MalformedHeader::Reject) | `InvalidInput` | 400 |
//!
//! Errors of the inner service pass through unchanged (as [`BoxError`]).
//!
//! ```
//! use std::time::Duration;
//! use palisade_deadline::error::{BoxError, DeadlineExceeded, DeadlineSource};
//!
//! let err: BoxError = DeadlineExceeded::new("api", Duration::from_secs(2), DeadlineSource::Budget).into();
//! let exceeded = err.downcast_ref::<DeadlineExceeded>().unwrap();
//! assert_eq!(exceeded.name(), "api");
//! assert_eq!(exceeded.deadline_source(), DeadlineSource::Budget);
//! assert_eq!(err.to_string(), "deadline `api` exceeded after 2s (set by budget)");
//! ```

pub use palisade_core::BoxError;
pub use palisade_core::HeaderError;
pub use palisade_core::layer_error::{DeadlineExceeded, DeadlineSource};
