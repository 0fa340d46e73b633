//! strictly tells, inbound by inbound, when a Kuma workload can switch from
//! Permissive to Strict mTLS without breaking anyone.
//!
//! Data flows one way through these modules:
//!
//! - [`kuma`]: the control-plane API client and the JSON shapes it reads;
//! - [`envoy`]: the parser for a sidecar's `/stats` text;
//! - [`naming`]: which stat names belong to an inbound;
//! - [`engine`]: counters to verdicts, pure, with time passed in;
//! - [`poller`]: the poll loop that feeds the engine, over this daemon's
//!   [`shard`] of the dataplanes;
//! - [`exporter`]: metrics, JSON API, status page and their HTTP server.
//!
//! [`cli`] holds the command line; [`daemon`] (`strictly run`), [`check`]
//! (`strictly check`) and [`demo`] (`strictly demo`) assemble the modules into the
//! commands; [`sim`] is the simulated control plane that tests, the demo and the
//! benchmarks share; [`telemetry`] sets up logging.

pub mod check;
pub mod cli;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod envoy;
pub mod exporter;
pub mod kuma;
pub mod naming;
pub mod poller;
pub mod shard;
pub mod sim;
pub mod telemetry;
