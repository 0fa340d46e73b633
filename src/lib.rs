//! strictly tells, inbound by inbound, when a Kuma workload can switch from
//! Permissive to Strict mTLS without breaking anyone.
//!
//! Data flows one way through these modules:
//!
//! - [`kuma`]: the control-plane API client and the JSON shapes it reads.
//! - [`envoy`]: the parser for a sidecar's `/stats` text.
//! - [`naming`]: which stat names belong to an inbound.
//! - [`engine`]: counters to verdicts; pure, with time passed in.

pub mod engine;
pub mod envoy;
pub mod kuma;
pub mod naming;
pub mod sim;
