//! RED request metrics: rate, errors, duration per route (feature `request-metrics`).
