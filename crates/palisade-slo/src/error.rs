//! Errors: the rejection a throttled caller sees, and bad configuration.

pub use crate::config::ConfigError;
pub use palisade_core::layer_error::Throttled;
