//! The Kuma control-plane API: its JSON shapes and an HTTP client.

pub mod client;
pub mod error;
pub mod model;
