//! Real Envoy sidecars for integration tests: Envoy configured like a Kuma
//! inbound (templates in `tests/envoy/`), the workload behind it, the
//! certificates of a small mesh, and clients that open every kind of connection
//! a sidecar sees. Around them: strictly run in this process ([`daemon`]) and
//! a real Prometheus scraping it ([`prometheus`]).
//!
//! Start with [`inbound::Inbound::start`]. Everything binds 127.0.0.1 only, and
//! every process started here is killed and reaped when its handle drops, also
//! when a test panics.
//!
//! The harness is synchronous (std processes, sockets and threads) so that any
//! test can use it; async tests can call it from `tokio::task::spawn_blocking`
//! or `tokio::task::block_in_place`. Only [`daemon`] is async, like strictly.
//! It needs Envoy, redis-server, redis-cli, openssl, python3, prometheus and
//! promtool: `scripts/install-test-deps.sh` installs them, and a test that
//! cannot find one fails and says so.

// Each test crate that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod certs;
pub mod clients;
pub mod daemon;
pub mod envoy;
pub mod http1;
pub mod inbound;
pub mod measure;
pub mod process;
pub mod prometheus;
pub mod stats;
pub mod traffic;
pub mod workload;
