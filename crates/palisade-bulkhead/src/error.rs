//! Errors: the rejection a caller sees, and bad configuration.
//!
//! A refused call fails with [`BulkheadFull`] (defined in palisade-core, so that any
//! classifier and `palisade_core::rejection::error_response` recognise it without
//! depending on this crate), travelling as a [`BoxError`](palisade_core::BoxError):
//! find it with `err.downcast_ref::<BulkheadFull>()`. Its
//! [`reason`](BulkheadFull::reason) says why: [`BulkheadReason::QueueFull`],
//! [`BulkheadReason::WaitTimeout`] or [`BulkheadReason::Deadline`]. Its category is
//! `Transient`; as HTTP it is a 503.

pub use crate::config::ConfigError;
pub use palisade_core::layer_error::{BulkheadFull, BulkheadReason};
