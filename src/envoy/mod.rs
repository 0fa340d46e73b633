//! What strictly reads from Envoy: the `/stats` text of a sidecar.

pub mod stats;
